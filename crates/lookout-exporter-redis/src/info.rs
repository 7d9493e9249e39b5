//! `INFO ALL` (and `CONFIG GET`, `SLOWLOG`, `LATENCY LATEST` replies) to metric families with
//! redis_exporter 1.45's names, labels and HELP texts.
//!
//! Unknown fields are ignored; malformed values are skipped, never a panic.

use std::collections::{BTreeMap, HashSet};

use lookout_exposition::MetricType;
use lookout_exposition::families::Families;

/// How an INFO field becomes a metric.
#[derive(Clone, Copy)]
struct Mapping {
    field: &'static str,
    metric: &'static str,
    kind: MetricType,
    scale: f64,
}

const fn gauge(field: &'static str, metric: &'static str) -> Mapping {
    Mapping {
        field,
        metric,
        kind: MetricType::Gauge,
        scale: 1.0,
    }
}

const fn counter(field: &'static str, metric: &'static str) -> Mapping {
    Mapping {
        field,
        metric,
        kind: MetricType::Counter,
        scale: 1.0,
    }
}

/// INFO fields exported as plain metrics `redis_<metric>` with HELP `<metric> metric`.
const MAPPINGS: &[Mapping] = &[
    // Server
    gauge("uptime_in_seconds", "uptime_in_seconds"),
    gauge("process_id", "process_id"),
    gauge("io_threads_active", "io_threads_active"),
    // Clients
    gauge("connected_clients", "connected_clients"),
    gauge("blocked_clients", "blocked_clients"),
    gauge("tracking_clients", "tracking_clients"),
    gauge("clients_in_timeout_table", "clients_in_timeout_table"),
    gauge("cluster_connections", "cluster_connections"),
    gauge("client_longest_output_list", "client_longest_output_list"),
    gauge("client_biggest_input_buf", "client_biggest_input_buf"),
    gauge(
        "client_recent_max_output_buffer",
        "client_recent_max_output_buffer_bytes",
    ),
    gauge(
        "client_recent_max_input_buffer",
        "client_recent_max_input_buffer_bytes",
    ),
    // Memory
    gauge("allocator_active", "allocator_active_bytes"),
    gauge("allocator_allocated", "allocator_allocated_bytes"),
    gauge("allocator_resident", "allocator_resident_bytes"),
    gauge("allocator_frag_ratio", "allocator_frag_ratio"),
    gauge("allocator_frag_bytes", "allocator_frag_bytes"),
    gauge("allocator_rss_ratio", "allocator_rss_ratio"),
    gauge("allocator_rss_bytes", "allocator_rss_bytes"),
    gauge("used_memory", "memory_used_bytes"),
    gauge("used_memory_rss", "memory_used_rss_bytes"),
    gauge("used_memory_peak", "memory_used_peak_bytes"),
    gauge("used_memory_lua", "memory_used_lua_bytes"),
    gauge("used_memory_overhead", "memory_used_overhead_bytes"),
    gauge("used_memory_startup", "memory_used_startup_bytes"),
    gauge("used_memory_dataset", "memory_used_dataset_bytes"),
    gauge("used_memory_scripts", "memory_used_scripts_bytes"),
    gauge("maxmemory", "memory_max_bytes"),
    gauge("number_of_cached_scripts", "number_of_cached_scripts"),
    gauge("mem_fragmentation_ratio", "mem_fragmentation_ratio"),
    gauge("mem_fragmentation_bytes", "mem_fragmentation_bytes"),
    gauge("mem_clients_slaves", "mem_clients_slaves"),
    gauge("mem_clients_normal", "mem_clients_normal"),
    gauge(
        "mem_not_counted_for_evict",
        "mem_not_counted_for_eviction_bytes",
    ),
    gauge("lazyfree_pending_objects", "lazyfree_pending_objects"),
    gauge("active_defrag_running", "active_defrag_running"),
    // Persistence
    gauge("loading", "loading_dump_file"),
    gauge("rdb_changes_since_last_save", "rdb_changes_since_last_save"),
    gauge("rdb_bgsave_in_progress", "rdb_bgsave_in_progress"),
    gauge("rdb_last_save_time", "rdb_last_save_timestamp_seconds"),
    gauge("rdb_last_bgsave_status", "rdb_last_bgsave_status"),
    gauge("rdb_last_bgsave_time_sec", "rdb_last_bgsave_duration_sec"),
    gauge(
        "rdb_current_bgsave_time_sec",
        "rdb_current_bgsave_duration_sec",
    ),
    gauge("rdb_last_cow_size", "rdb_last_cow_size_bytes"),
    gauge("aof_enabled", "aof_enabled"),
    gauge("aof_rewrite_in_progress", "aof_rewrite_in_progress"),
    gauge("aof_rewrite_scheduled", "aof_rewrite_scheduled"),
    gauge("aof_last_rewrite_time_sec", "aof_last_rewrite_duration_sec"),
    gauge(
        "aof_current_rewrite_time_sec",
        "aof_current_rewrite_duration_sec",
    ),
    gauge("aof_last_cow_size", "aof_last_cow_size_bytes"),
    gauge("aof_current_size", "aof_current_size_bytes"),
    gauge("aof_base_size", "aof_base_size_bytes"),
    gauge("aof_pending_rewrite", "aof_pending_rewrite"),
    gauge("aof_buffer_length", "aof_buffer_length"),
    gauge("aof_rewrite_buffer_length", "aof_rewrite_buffer_length"),
    gauge("aof_pending_bio_fsync", "aof_pending_bio_fsync"),
    gauge("aof_delayed_fsync", "aof_delayed_fsync"),
    gauge("aof_last_bgrewrite_status", "aof_last_bgrewrite_status"),
    gauge("aof_last_write_status", "aof_last_write_status"),
    gauge("module_fork_in_progress", "module_fork_in_progress"),
    gauge("module_fork_last_cow_size", "module_fork_last_cow_size"),
    // Stats
    gauge("pubsub_channels", "pubsub_channels"),
    gauge("pubsub_patterns", "pubsub_patterns"),
    Mapping {
        field: "latest_fork_usec",
        metric: "latest_fork_seconds",
        kind: MetricType::Gauge,
        scale: 1e-6,
    },
    gauge("migrate_cached_sockets", "migrate_cached_sockets_total"),
    gauge("expired_stale_perc", "expired_stale_percentage"),
    gauge(
        "expired_time_cap_reached_count",
        "expired_time_cap_reached_total",
    ),
    gauge("active_defrag_hits", "defrag_hits"),
    gauge("active_defrag_misses", "defrag_misses"),
    gauge("active_defrag_key_hits", "defrag_key_hits"),
    gauge("active_defrag_key_misses", "defrag_key_misses"),
    gauge("slave_expires_tracked_keys", "slave_expires_tracked_keys"),
    gauge("tracking_total_keys", "tracking_total_keys"),
    gauge("tracking_total_items", "tracking_total_items"),
    gauge("tracking_total_prefixes", "tracking_total_prefixes"),
    gauge("sync_full", "replica_resyncs_full"),
    gauge("sync_partial_ok", "replica_partial_resync_accepted"),
    gauge("sync_partial_err", "replica_partial_resync_denied"),
    counter("total_connections_received", "connections_received_total"),
    counter("total_commands_processed", "commands_processed_total"),
    counter("rejected_connections", "rejected_connections_total"),
    counter("total_net_input_bytes", "net_input_bytes_total"),
    counter("total_net_output_bytes", "net_output_bytes_total"),
    counter("expired_keys", "expired_keys_total"),
    counter("evicted_keys", "evicted_keys_total"),
    counter("keyspace_hits", "keyspace_hits_total"),
    counter("keyspace_misses", "keyspace_misses_total"),
    counter("unexpected_error_replies", "unexpected_error_replies"),
    counter("total_error_replies", "total_error_replies"),
    counter("dump_payload_sanitizations", "dump_payload_sanitizations"),
    counter("total_reads_processed", "total_reads_processed"),
    counter("total_writes_processed", "total_writes_processed"),
    counter("io_threaded_reads_processed", "io_threaded_reads_processed"),
    counter(
        "io_threaded_writes_processed",
        "io_threaded_writes_processed",
    ),
    // Replication
    gauge("connected_slaves", "connected_slaves"),
    gauge("repl_backlog_size", "replication_backlog_bytes"),
    gauge("repl_backlog_active", "repl_backlog_is_active"),
    gauge(
        "repl_backlog_first_byte_offset",
        "repl_backlog_first_byte_offset",
    ),
    gauge("repl_backlog_histlen", "repl_backlog_history_bytes"),
    gauge("master_repl_offset", "master_repl_offset"),
    gauge("second_repl_offset", "second_repl_offset"),
    gauge("slave_priority", "slave_priority"),
    // CPU
    counter("used_cpu_sys", "cpu_sys_seconds_total"),
    counter("used_cpu_user", "cpu_user_seconds_total"),
    counter("used_cpu_sys_children", "cpu_sys_children_seconds_total"),
    counter("used_cpu_user_children", "cpu_user_children_seconds_total"),
    counter(
        "used_cpu_sys_main_thread",
        "cpu_sys_main_thread_seconds_total",
    ),
    counter(
        "used_cpu_user_main_thread",
        "cpu_user_main_thread_seconds_total",
    ),
    // Cluster
    gauge("cluster_enabled", "cluster_enabled"),
];

fn mapping(field: &str) -> Option<&'static Mapping> {
    use std::sync::OnceLock;
    static INDEX: OnceLock<std::collections::HashMap<&'static str, &'static Mapping>> =
        OnceLock::new();
    INDEX
        .get_or_init(|| MAPPINGS.iter().map(|m| (m.field, m)).collect())
        .get(field)
        .copied()
}

/// Bounds on label cardinality taken from the server's answers.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most `db` label values (`redis_db_keys` and friends).
    pub max_databases: usize,
    /// Most `cmd` label values (`redis_commands_*`, latency summaries).
    pub max_commands: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_databases: 256,
            max_commands: 1000,
        }
    }
}

/// A value as redis_exporter reads it: a number, or `ok`/`up` (1) and `err`/`fail`/`down` (0).
pub fn parse_value(v: &str) -> Option<f64> {
    let v = v.trim();
    match v {
        "ok" | "up" | "true" | "yes" => Some(1.0),
        "err" | "fail" | "down" | "false" | "no" => Some(0.0),
        _ => v.parse::<f64>().ok(),
    }
}

fn metric_name(metric: &str) -> String {
    format!("redis_{metric}")
}

fn help_for(metric: &str) -> String {
    format!("{metric} metric")
}

/// Splits `a=1,b=2` into pairs; `None` when a part lacks `=`.
fn kv_pairs(s: &str) -> Option<Vec<(&str, &str)>> {
    s.split(',').map(|p| p.split_once('=')).collect()
}

/// Turns an `INFO ALL` reply into families. `db_count` is the configured number of databases
/// (every `dbN` below it gets `redis_db_keys`/`_expiring`, 0 when empty), capped by
/// `limits.max_databases`. `now_unix` is used for `redis_start_time_seconds`.
pub fn info_to_families(info: &str, db_count: usize, limits: Limits, now_unix: f64) -> Families {
    let mut f = Families::new();
    let mut section = "";
    let mut values: BTreeMap<&str, &str> = BTreeMap::new();
    let mut handled_dbs: HashSet<String> = HashSet::new();
    let mut cmd_stats: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let mut cmd_latency: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut master_host = "";
    let mut master_port = "";
    let mut commands_seen = 0usize;

    for raw in info.lines() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix("# ") {
            section = name.trim();
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if key.is_empty() {
            continue;
        }
        values.insert(key, value);
        if is_master_field(key, "_host") {
            master_host = value;
        }
        if is_master_field(key, "_port") {
            master_port = value;
        }
        match section {
            "Server" => {
                if key == "uptime_in_seconds"
                    && let Some(up) = parse_value(value)
                {
                    f.add(
                        "redis_start_time_seconds",
                        "Start time of the Redis instance since unix epoch in seconds.",
                        MetricType::Gauge,
                        &[],
                        (now_unix - up).floor(),
                    );
                }
            }
            "Replication" if replication_field(&mut f, key, value, master_host, master_port) => {
                continue;
            }
            "Commandstats" => {
                if let Some(cmd) = key.strip_prefix("cmdstat_") {
                    if commands_seen >= limits.max_commands {
                        continue;
                    }
                    if let Some((calls, usec)) = command_stats(&mut f, cmd, value) {
                        commands_seen += 1;
                        cmd_stats.insert(cmd.to_string(), (calls, usec));
                    }
                }
                continue;
            }
            "Latencystats" => {
                if let Some(cmd) = key.strip_prefix("latency_percentiles_usec_")
                    && let Some(pairs) = kv_pairs(value)
                {
                    let qs: Option<Vec<(f64, f64)>> = pairs
                        .iter()
                        .map(|(p, v)| {
                            let q = p.strip_prefix('p')?.parse::<f64>().ok()?;
                            Some((q, v.parse::<f64>().ok()?))
                        })
                        .collect();
                    if let Some(qs) = qs {
                        cmd_latency.insert(cmd.to_string(), qs);
                    }
                }
                continue;
            }
            "Errorstats" => {
                if let Some(err) = key.strip_prefix("errorstat_")
                    && let Some(pairs) = kv_pairs(value)
                    && let Some((_, count)) = pairs.iter().find(|(k, _)| *k == "count")
                    && let Some(count) = parse_value(count)
                {
                    f.add(
                        "redis_errors_total",
                        "Total number of errors per error type",
                        MetricType::Counter,
                        &[("err", err)],
                        count,
                    );
                }
                continue;
            }
            "Keyspace" => {
                if keyspace_line(&mut f, key, value, limits) {
                    handled_dbs.insert(key.to_string());
                }
                continue;
            }
            _ => {}
        }
        if let Some(m) = mapping(key)
            && let Some(v) = parse_value(value)
        {
            f.add(
                &metric_name(m.metric),
                &help_for(m.metric),
                m.kind,
                &[],
                v * m.scale,
            );
        }
    }

    for (cmd, qs) in &cmd_latency {
        if let Some((calls, usec)) = cmd_stats.get(cmd) {
            f.add_summary(
                "redis_latency_percentiles_usec",
                "A summary of latency percentile distribution per command",
                &[("cmd", cmd)],
                qs,
                *usec,
                *calls,
            );
        }
    }

    for i in 0..db_count.min(limits.max_databases) {
        let db = format!("db{i}");
        if !handled_dbs.contains(&db) {
            f.add(
                "redis_db_keys",
                "Total number of keys by DB",
                MetricType::Gauge,
                &[("db", &db)],
                0.0,
            );
            f.add(
                "redis_db_keys_expiring",
                "Total number of expiring keys by DB",
                MetricType::Gauge,
                &[("db", &db)],
                0.0,
            );
        }
    }

    let get = |k: &str| values.get(k).copied().unwrap_or("");
    let mode = if values.contains_key("redis_mode") {
        get("redis_mode")
    } else {
        get("server_mode")
    };
    f.add(
        "redis_instance_info",
        "Information about the Redis instance",
        MetricType::Gauge,
        &[
            ("role", get("role")),
            ("redis_version", get("redis_version")),
            ("redis_build_id", get("redis_build_id")),
            ("redis_mode", mode),
            ("os", get("os")),
            ("maxmemory_policy", get("maxmemory_policy")),
            ("tcp_port", get("tcp_port")),
            ("run_id", get("run_id")),
            ("process_id", get("process_id")),
        ],
        1.0,
    );
    if get("role") == "slave" {
        f.add(
            "redis_slave_info",
            "Information about the Redis slave",
            MetricType::Gauge,
            &[
                ("master_host", get("master_host")),
                ("master_port", get("master_port")),
                ("read_only", get("slave_read_only")),
            ],
            1.0,
        );
    }
    f
}

/// `master_host`, `master_1_host`, ... (KeyDB multi-master) with the given suffix.
fn is_master_field(key: &str, suffix: &str) -> bool {
    let Some(rest) = key.strip_prefix("master") else {
        return false;
    };
    let Some(mid) = rest.strip_suffix(suffix) else {
        return false;
    };
    mid.is_empty() || (mid.starts_with('_') && mid[1..].bytes().all(|b| b.is_ascii_digit()))
}

/// Replica/master link fields; true when the field was consumed.
fn replication_field(f: &mut Families, key: &str, value: &str, host: &str, port: &str) -> bool {
    let link = [("master_host", host), ("master_port", port)];
    if is_master_field(key, "_link_status") {
        f.add(
            "redis_master_link_up",
            "Master link status on Redis slave",
            MetricType::Gauge,
            &link,
            if value == "up" { 1.0 } else { 0.0 },
        );
        return true;
    }
    let direct = if is_master_field(key, "_last_io_seconds_ago") {
        Some((
            "redis_master_last_io_seconds_ago",
            "Master last io seconds ago",
        ))
    } else if is_master_field(key, "_sync_in_progress") {
        Some(("redis_master_sync_in_progress", "Master sync in progress"))
    } else if key == "slave_repl_offset" {
        Some(("redis_slave_repl_offset", "Slave replication offset"))
    } else {
        None
    };
    if let Some((name, help)) = direct {
        let v = value.trim().parse::<i64>().unwrap_or(0) as f64;
        f.add(name, help, MetricType::Gauge, &link, v);
        return true;
    }
    // slaveN:ip=...,port=...,state=online,offset=...,lag=...
    if let Some(n) = key.strip_prefix("slave")
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
    {
        let Some(pairs) = kv_pairs(value) else {
            return false;
        };
        let get = |k: &str| pairs.iter().find(|(a, _)| *a == k).map(|(_, v)| *v);
        let Some(offset) = get("offset").and_then(|v| v.parse::<f64>().ok()) else {
            return false;
        };
        let labels = [
            ("slave_ip", get("ip").unwrap_or("")),
            ("slave_port", get("port").unwrap_or("")),
            ("slave_state", get("state").unwrap_or("")),
        ];
        f.add(
            "redis_connected_slave_offset_bytes",
            "Offset of connected slave",
            MetricType::Gauge,
            &labels,
            offset,
        );
        if let Some(lag) = get("lag").and_then(|v| v.parse::<f64>().ok()) {
            f.add(
                "redis_connected_slave_lag_seconds",
                "Lag of connected slave",
                MetricType::Gauge,
                &labels,
                lag,
            );
        }
        return true;
    }
    false
}

/// `cmdstat_get:calls=21,usec=175,usec_per_call=8.33[,rejected_calls=0,failed_calls=0]`.
fn command_stats(f: &mut Families, cmd: &str, value: &str) -> Option<(f64, f64)> {
    let pairs = kv_pairs(value)?;
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(a, _)| *a == k)
            .and_then(|(_, v)| v.parse::<f64>().ok())
    };
    let calls = get("calls")?;
    let usec = get("usec")?;
    let l = [("cmd", cmd)];
    f.add(
        "redis_commands_total",
        "Total number of calls per command",
        MetricType::Counter,
        &l,
        calls,
    );
    f.add(
        "redis_commands_duration_seconds_total",
        "Total amount of time in seconds spent per command",
        MetricType::Counter,
        &l,
        usec / 1e6,
    );
    if let (Some(rejected), Some(failed)) = (get("rejected_calls"), get("failed_calls")) {
        f.add(
            "redis_commands_rejected_calls_total",
            "Total number of errors within command execution per command",
            MetricType::Counter,
            &l,
            rejected,
        );
        f.add(
            "redis_commands_failed_calls_total",
            "Total number of errors prior command execution per command",
            MetricType::Counter,
            &l,
            failed,
        );
    }
    Some((calls, usec))
}

/// `db0:keys=1,expires=0,avg_ttl=0`; true when the line was a valid keyspace entry.
fn keyspace_line(f: &mut Families, key: &str, value: &str, limits: Limits) -> bool {
    let Some(idx) = key.strip_prefix("db").and_then(|n| n.parse::<usize>().ok()) else {
        return false;
    };
    if idx >= limits.max_databases {
        return false;
    }
    let Some(pairs) = kv_pairs(value) else {
        return false;
    };
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(a, _)| *a == k)
            .and_then(|(_, v)| v.parse::<f64>().ok())
    };
    let (Some(keys), Some(expires)) = (get("keys"), get("expires")) else {
        return false;
    };
    let l = [("db", key)];
    f.add(
        "redis_db_keys",
        "Total number of keys by DB",
        MetricType::Gauge,
        &l,
        keys,
    );
    f.add(
        "redis_db_keys_expiring",
        "Total number of expiring keys by DB",
        MetricType::Gauge,
        &l,
        expires,
    );
    if let Some(ttl) = get("avg_ttl") {
        f.add(
            "redis_db_avg_ttl_seconds",
            "Avg TTL in seconds",
            MetricType::Gauge,
            &l,
            ttl / 1000.0,
        );
    }
    true
}

/// `CONFIG GET` pairs: `redis_config_maxmemory`, `redis_config_maxclients`,
/// `redis_config_io_threads`; returns the `databases` setting when present.
pub fn config_to_families(f: &mut Families, pairs: &[(String, String)]) -> Option<usize> {
    let mut databases = None;
    for (k, v) in pairs {
        match k.as_str() {
            "databases" => databases = v.trim().parse::<usize>().ok(),
            "maxmemory" | "maxclients" | "io-threads" => {
                if let Ok(val) = v.trim().parse::<f64>() {
                    let metric = format!("config_{}", k.replace('-', "_"));
                    f.add(
                        &metric_name(&metric),
                        &help_for(&metric),
                        MetricType::Gauge,
                        &[],
                        val,
                    );
                }
            }
            _ => {}
        }
    }
    databases
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\nos:Linux\r\n\
process_id:42\r\ntcp_port:6379\r\nuptime_in_seconds:100\r\nrun_id:abc\r\n\r\n# Memory\r\n\
used_memory:1000\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\nlatest_fork_usec:2500\r\n\
# Persistence\r\nrdb_last_bgsave_status:ok\r\naof_last_write_status:err\r\n\
# Stats\r\nkeyspace_hits:7\r\nsome_future_field:123\r\nweird_field:not-a-number\r\n\
# Replication\r\nrole:master\r\nconnected_slaves:1\r\n\
slave0:ip=10.0.0.2,port=6380,state=online,offset=1234,lag=1\r\n\
# CPU\r\nused_cpu_sys:1.5\r\n\
# Commandstats\r\ncmdstat_get:calls=21,usec=175,usec_per_call=8.33,rejected_calls=1,failed_calls=2\r\n\
cmdstat_set:calls=3,usec=30,usec_per_call=10.00\r\ncmdstat_bad:garbage\r\n\
# Errorstats\r\nerrorstat_ERR:count=4\r\n\
# Latencystats\r\nlatency_percentiles_usec_get:p50=1.003,p99=2.007,p99.9=4.015\r\n\
# Keyspace\r\ndb0:keys=50,expires=2,avg_ttl=1500\r\ndb3:keys=1,expires=1,avg_ttl=0\r\n";

    fn value(f: &Families, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        f.get(name)?
            .samples
            .iter()
            .find(|s| {
                s.suffix.is_empty()
                    && labels
                        .iter()
                        .all(|(n, v)| s.labels.iter().any(|(a, b)| a == n && b == v))
            })
            .map(|s| s.value)
    }

    #[test]
    fn maps_fields_like_redis_exporter() {
        let f = info_to_families(INFO, 16, Limits::default(), 1000.0);
        assert_eq!(value(&f, "redis_memory_used_bytes", &[]), Some(1000.0));
        assert_eq!(value(&f, "redis_memory_max_bytes", &[]), Some(0.0));
        assert_eq!(value(&f, "redis_latest_fork_seconds", &[]), Some(0.0025));
        assert_eq!(value(&f, "redis_rdb_last_bgsave_status", &[]), Some(1.0));
        assert_eq!(value(&f, "redis_aof_last_write_status", &[]), Some(0.0));
        assert_eq!(value(&f, "redis_keyspace_hits_total", &[]), Some(7.0));
        assert_eq!(value(&f, "redis_cpu_sys_seconds_total", &[]), Some(1.5));
        assert_eq!(value(&f, "redis_start_time_seconds", &[]), Some(900.0));
        assert_eq!(
            f.get("redis_keyspace_hits_total").unwrap().kind,
            MetricType::Counter
        );
        assert_eq!(
            f.get("redis_memory_used_bytes").unwrap().help,
            "memory_used_bytes metric"
        );
    }

    #[test]
    fn keyspace_pads_empty_databases() {
        let f = info_to_families(INFO, 16, Limits::default(), 0.0);
        assert_eq!(value(&f, "redis_db_keys", &[("db", "db0")]), Some(50.0));
        assert_eq!(
            value(&f, "redis_db_keys_expiring", &[("db", "db0")]),
            Some(2.0)
        );
        assert_eq!(
            value(&f, "redis_db_avg_ttl_seconds", &[("db", "db0")]),
            Some(1.5)
        );
        assert_eq!(value(&f, "redis_db_keys", &[("db", "db3")]), Some(1.0));
        assert_eq!(value(&f, "redis_db_keys", &[("db", "db15")]), Some(0.0));
        assert_eq!(f.get("redis_db_keys").unwrap().samples.len(), 16);
        assert!(value(&f, "redis_db_avg_ttl_seconds", &[("db", "db1")]).is_none());
    }

    #[test]
    fn database_limit_bounds_output() {
        let limits = Limits {
            max_databases: 2,
            max_commands: 1,
        };
        let f = info_to_families(INFO, 10_000, limits, 0.0);
        assert_eq!(f.get("redis_db_keys").unwrap().samples.len(), 2);
        assert_eq!(f.get("redis_commands_total").unwrap().samples.len(), 1);
    }

    #[test]
    fn commands_errors_latency_and_replicas() {
        let f = info_to_families(INFO, 16, Limits::default(), 0.0);
        assert_eq!(
            value(&f, "redis_commands_total", &[("cmd", "get")]),
            Some(21.0)
        );
        assert_eq!(
            value(
                &f,
                "redis_commands_duration_seconds_total",
                &[("cmd", "get")]
            ),
            Some(0.000175)
        );
        assert_eq!(
            value(&f, "redis_commands_failed_calls_total", &[("cmd", "get")]),
            Some(2.0)
        );
        // pre-6.2 format: no rejected/failed samples for it
        assert_eq!(
            value(&f, "redis_commands_total", &[("cmd", "set")]),
            Some(3.0)
        );
        assert!(value(&f, "redis_commands_rejected_calls_total", &[("cmd", "set")]).is_none());
        assert!(value(&f, "redis_commands_total", &[("cmd", "bad")]).is_none());
        assert_eq!(
            value(&f, "redis_errors_total", &[("err", "ERR")]),
            Some(4.0)
        );
        let lat = f.get("redis_latency_percentiles_usec").unwrap();
        assert_eq!(lat.kind, MetricType::Summary);
        assert_eq!(lat.samples.len(), 5);
        assert_eq!(
            value(
                &f,
                "redis_connected_slave_offset_bytes",
                &[("slave_ip", "10.0.0.2")]
            ),
            Some(1234.0)
        );
        assert_eq!(
            value(
                &f,
                "redis_connected_slave_lag_seconds",
                &[("slave_state", "online")]
            ),
            Some(1.0)
        );
        let info = f.get("redis_instance_info").unwrap();
        assert_eq!(
            info.label_names(),
            vec![
                "maxmemory_policy",
                "os",
                "process_id",
                "redis_build_id",
                "redis_mode",
                "redis_version",
                "role",
                "run_id",
                "tcp_port"
            ]
        );
    }

    #[test]
    fn replica_fields() {
        let info = "# Replication\nrole:slave\nmaster_host:10.0.0.1\nmaster_port:6379\n\
master_link_status:down\nmaster_last_io_seconds_ago:-1\nmaster_sync_in_progress:0\n\
slave_repl_offset:99\nslave_read_only:1\n";
        let f = info_to_families(info, 0, Limits::default(), 0.0);
        assert_eq!(
            value(&f, "redis_master_link_up", &[("master_host", "10.0.0.1")]),
            Some(0.0)
        );
        assert_eq!(
            value(&f, "redis_slave_repl_offset", &[("master_port", "6379")]),
            Some(99.0)
        );
        assert_eq!(
            value(&f, "redis_slave_info", &[("read_only", "1")]),
            Some(1.0)
        );
    }

    #[test]
    fn config_values() {
        let mut f = Families::new();
        let pairs: Vec<(String, String)> = [
            ("maxmemory", "209715200"),
            ("databases", "4"),
            ("io-threads", "1"),
            ("maxclients", "bogus"),
            ("save", "3600 1"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(config_to_families(&mut f, &pairs), Some(4));
        assert_eq!(value(&f, "redis_config_maxmemory", &[]), Some(209715200.0));
        assert_eq!(value(&f, "redis_config_io_threads", &[]), Some(1.0));
        assert!(f.get("redis_config_maxclients").is_none());
    }

    /// Fields a future or forked server might add, odd sections and malformed lines: the
    /// known ones still map, the rest are ignored.
    #[test]
    fn unexpected_info_fields_are_ignored() {
        let info = "# Server\r\nredis_version:99.0.0\r\nbrand_new_field:42\r\nweird:\r\n:novalue\r\n\
no colon at all\r\n# Memory\r\nused_memory:2048\r\nused_memory_future_thing:abc\r\n\
used_memory_rss:not-a-number\r\n# Clients\r\nconnected_clients:3:extra:colons\r\n\
# Keyspace\r\ndb0:keys=5,expires=0,avg_ttl=0,subexpiry=0,new_counter=9\r\ndbx:keys=1\r\n\
db1:garbage\r\n# Commandstats\r\ncmdstat_get:calls=2,usec=10,usec_per_call=5,new=1\r\n\
cmdstat_:calls=1\r\n# A Section Nobody Knows\r\nfoo_bar:1\r\n\
# Errorstats\r\nerrorstat_X:bogus\r\n";
        let f = info_to_families(info, 4, Limits::default(), 0.0);
        // Known fields still map.
        assert_eq!(value(&f, "redis_memory_used_bytes", &[]), Some(2048.0));
        assert_eq!(value(&f, "redis_db_keys", &[("db", "db0")]), Some(5.0));
        assert_eq!(
            value(&f, "redis_commands_total", &[("cmd", "get")]),
            Some(2.0)
        );
        // Unknown or unparsable fields leave nothing behind.
        assert!(f.get("redis_brand_new_field").is_none());
        assert!(f.get("redis_foo_bar").is_none());
        assert!(f.get("redis_used_memory_future_thing").is_none());
        assert!(f.get("redis_memory_used_rss_bytes").is_none());
        assert!(f.get("redis_connected_clients").is_none());
        assert!(f.get("redis_errors_total").is_none());
        assert_eq!(value(&f, "redis_db_keys", &[("db", "db1")]), Some(0.0));
        for fam in f.iter() {
            assert!(fam.name.starts_with("redis_"), "{}", fam.name);
        }
        let ver = f.get("redis_instance_info").unwrap();
        assert!(
            ver.samples[0]
                .labels
                .contains(&("redis_version".into(), "99.0.0".into()))
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_info_never_panics(s in "(?s).{0,400}", db in 0usize..50) {
            let _ = info_to_families(&s, db, Limits::default(), 0.0);
        }

        #[test]
        fn arbitrary_info_lines_never_panic(
            lines in proptest::collection::vec(("[a-z_#0-9 ]{0,12}", "[a-z0-9=,.:_-]{0,30}"), 0..30)
        ) {
            let mut s = String::new();
            for (k, v) in lines {
                s.push_str(&k);
                s.push(':');
                s.push_str(&v);
                s.push_str("\r\n");
            }
            let _ = info_to_families(&s, 16, Limits::default(), 0.0);
        }
    }
}
