//! Every metric name the gateway exports. Names shared with the kubernaut Gateway keep its
//! spelling so existing dashboards work.

/// Counter, label `source`.
pub const SIGNALS_RECEIVED: &str = "gateway_signals_received_total";
/// Counter.
pub const SIGNALS_DEDUPLICATED: &str = "gateway_signals_deduplicated_total";
/// Counter.
pub const CRDS_CREATED: &str = "gateway_crds_created_total";
/// Counter, label `error_type`.
pub const CRD_CREATION_ERRORS: &str = "gateway_crd_creation_errors_total";
/// Counter, labels `outcome` (`allowed`, `missing_token`, `unauthenticated`, `forbidden`,
/// `unavailable`) and `cache` (`hit`, `miss`).
pub const AUTH_DECISIONS: &str = "gateway_auth_decisions_total";
/// Counter, label `limit` (`alerts_per_request`, `signal_bytes`, `body_bytes`,
/// `body_timeout`): requests or signals refused by a request limit.
pub const LIMIT_REJECTIONS: &str = "gateway_limit_rejections_total";
/// Counter, label `listener` (`api`, `peer`, `health`, `metrics`): idle connections closed to make
/// room for a new one at the listener's connection cap.
pub const CONNECTIONS_EVICTED: &str = "gateway_connections_evicted_total";
/// Histogram (seconds), labels `route`, `status`.
pub const HTTP_REQUEST_DURATION: &str = "gateway_http_request_duration_seconds";
/// Counter, labels `verb`, `outcome`.
pub const K8S_REQUESTS: &str = "gateway_k8s_requests_total";
/// Histogram (seconds), label `verb`.
pub const K8S_REQUEST_DURATION: &str = "gateway_k8s_request_duration_seconds";
/// Counter, labels `verb`, `resolution`.
pub const AMBIGUOUS_WRITES: &str = "gateway_ambiguous_writes_total";
/// Counter, label `source_type`: deliveries answered from the redelivery window (the
/// ordinal of the identical delivery they repeat), not counted again.
pub const REDELIVERIES: &str = "gateway_redeliveries_total";
/// Gauge: deliveries the redelivery window remembers (in flight or recorded).
pub const REDELIVERY_WINDOW_ENTRIES: &str = "gateway_redelivery_window_entries";
/// Gauge.
pub const INDEX_ENTRIES: &str = "gateway_index_entries";
/// Counter.
pub const WATCH_RESTARTS: &str = "gateway_watch_restarts_total";
/// Counter.
pub const STORMS_DETECTED: &str = "gateway_storms_detected_total";
/// Gauge.
pub const STORM_QUEUE_PENDING: &str = "gateway_storm_queue_pending";
/// Counter, label `outcome`.
pub const STORM_PATCHES: &str = "gateway_storm_patches_total";
/// Counter.
pub const STORM_COALESCED: &str = "gateway_storm_coalesced_total";
/// Counter.
pub const STORM_QUEUE_OVERFLOW: &str = "gateway_storm_queue_overflow_total";
/// Gauge: 0 closed, 1 open.
pub const CIRCUIT_BREAKER_STATE: &str = "gateway_circuit_breaker_state";
/// Gauge.
pub const IN_FLIGHT: &str = "gateway_in_flight_requests";
/// Counter.
pub const REJECTED_OVERLOAD: &str = "gateway_overload_rejections_total";
/// Counter, label `result` (`controller`, `unowned`, `other_kind`): owner resolutions.
pub const OWNER_RESOLUTIONS: &str = "gateway_owner_resolutions_total";
/// Counter, label `reason`: signals that kept their labelled resource.
pub const OWNER_FALLBACKS: &str = "gateway_owner_fallbacks_total";
/// Gauge: objects held by the owner cache.
pub const OWNER_CACHE_OBJECTS: &str = "gateway_owner_cache_objects";
/// Counter, label `reason` (`unmanaged`, `opted_out`).
pub const SIGNALS_OUT_OF_SCOPE: &str = "gateway_signals_out_of_scope_total";
/// Gauge (bytes), read from `/proc` at each scrape.
pub const PROCESS_RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
/// Counter-like gauge (seconds of user + system CPU), read from `/proc` at each scrape.
pub const PROCESS_CPU_SECONDS: &str = "process_cpu_seconds_total";
/// Gauge: live members of the cluster ring this replica sees, itself included.
pub const CLUSTER_MEMBERS: &str = "gateway_cluster_members";
/// Counter, label `outcome` (`ok`, `error`, `unanswered`): signals forwarded to their owner.
pub const FORWARDED_SIGNALS: &str = "gateway_forwarded_signals_total";
/// Histogram (seconds): one forward to the owner, answer included.
pub const FORWARD_DURATION: &str = "gateway_forward_duration_seconds";
/// Counter, label `reason` (`unreachable`, `busy`, `refused`): signals a replica recorded
/// itself although another owns them.
pub const LOCAL_FALLBACKS: &str = "gateway_local_fallbacks_total";
