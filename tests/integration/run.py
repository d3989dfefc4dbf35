#!/usr/bin/env python3
"""huiqi integration tests.

    python3 tests/integration/run.py --huiqid build/huiqid [--sanitized] [--filter S] [-v]

Each test starts its own redis-server and huiqid on free loopback ports (see
harness.py), and stops them with SIGTERM at the end, requiring exit code 0 and, with
--sanitized, no AddressSanitizer / LeakSanitizer / UBSan report. Tests run in the
order of TESTS below; the last line printed is "N passed, N failed".
"""

import argparse
import os
import shutil
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import tests_alloc  # noqa: E402
import tests_api  # noqa: E402
import tests_auth  # noqa: E402
import tests_docs  # noqa: E402
import tests_deadline  # noqa: E402
import tests_faults  # noqa: E402
import tests_http  # noqa: E402
import tests_matching  # noqa: E402
import tests_ops  # noqa: E402
import tests_oracle  # noqa: E402
import tests_push  # noqa: E402
import tests_push_faults  # noqa: E402
import tests_redis_faults  # noqa: E402

# The suite, in order. Names are what --filter matches.
TESTS = [
    ("health_and_readiness", tests_api.test_health_and_readiness),
    ("taxonomy_endpoints", tests_api.test_taxonomy_endpoints),
    ("enterprise_crud", tests_api.test_enterprise_crud),
    ("enterprise_conditional_put", tests_api.test_enterprise_conditional_put),
    ("enterprise_conditional_patch", tests_api.test_enterprise_conditional_patch),
    ("enterprise_errors_change_nothing", tests_api.test_enterprise_errors_change_nothing),
    ("enterprise_body_too_large", tests_api.test_enterprise_body_too_large),
    ("enterprise_concurrent_patches", tests_api.test_enterprise_concurrent_patches),
    ("enterprise_patch_queue", tests_api.test_enterprise_patch_queue),
    ("enterprise_list_paging", tests_api.test_enterprise_list_paging),
    ("derived_region_and_entity", tests_api.test_derived_region_and_entity),
    ("derived_industry", tests_api.test_derived_industry),
    ("derived_size_boundaries", tests_api.test_derived_size_boundaries),
    ("derived_age_brackets", tests_api.test_derived_age_brackets),
    ("retag_follows_time", tests_api.test_retag_follows_time),
    ("retag_at_start_before_ready", tests_api.test_retag_at_start_before_ready),
    ("retag_legacy_and_broken_documents", tests_api.test_retag_legacy_and_broken_documents),
    ("retag_at_day_boundary", tests_api.test_retag_at_day_boundary),
    ("derived_qualification_expiry", tests_api.test_derived_qualification_expiry),
    ("explicit_tags_and_overrides", tests_api.test_explicit_tags_and_overrides),
    ("enterprise_same_content_any_order", tests_api.test_enterprise_same_content_any_order),
    ("enterprise_input_rules_match_docs", tests_api.test_enterprise_input_rules_match_docs),
    ("enterprise_tag_inputs_stay_in_their_class",
     tests_api.test_enterprise_tag_inputs_stay_in_their_class),
    ("policy_crud_and_errors", tests_api.test_policy_crud_and_errors),
    ("policy_states", tests_api.test_policy_states),
    ("policy_list_filters_and_paging", tests_api.test_policy_list_filters_and_paging),
    ("package_ranking_windows_why", tests_matching.test_package_ranking_windows_why),
    ("package_many_policies", tests_matching.test_package_many_policies),
    ("today_follows_utc_offset", tests_matching.test_today_follows_utc_offset),
    ("audience_counts_by_region", tests_matching.test_audience_counts_by_region),
    ("audience_tallies_follow_writes", tests_matching.test_audience_tallies_follow_writes),
    ("audience_preview_errors", tests_matching.test_audience_preview_errors),
    ("randomized_oracle", tests_oracle.test_randomized_oracle),
    ("restart_keeps_everything", tests_ops.test_restart_keeps_everything),
    ("redis_down_and_back", tests_ops.test_redis_down_and_back),
    ("redis_not_up_at_start", tests_ops.test_redis_not_up_at_start),
    ("redis_back_empty_reloads", tests_ops.test_redis_back_empty),
    ("taxonomy_remap_refused_append_accepted", tests_ops.test_taxonomy_remap),
    ("clean_shutdown_with_open_connections", tests_ops.test_clean_shutdown),
    ("http_smuggling_shapes_rejected", tests_http.test_smuggling_shapes),
    ("http_pipelining_in_order", tests_http.test_pipelining),
    ("http_upgrade_is_plain_http", tests_http.test_upgrade_is_plain_http),
    ("http_keepalive_sequential", tests_http.test_keepalive_sequential),
    ("http_half_request_then_close", tests_http.test_half_request_then_close),
    ("http_limits_431_414", tests_http.test_limits),
    ("http_authorization_header", tests_http.test_authorization_header),
    ("http_head_404_405", tests_http.test_head_404_405),
    ("http_header_timeout_408", tests_http.test_header_timeout),
    ("http_idle_keepalive_closed", tests_http.test_idle_keepalive),
    ("http_chunked_body", tests_http.test_chunked_body),
    ("http_request_id", tests_http.test_request_id),
    ("http_max_conns", tests_http.test_max_conns),
    ("http_query_repeated_parameters", tests_http.test_query_repeated_parameters),
    ("http_slow_body_cut_off", tests_http.test_slow_body_cut_off),
    ("http_unread_answers_bounded", tests_http.test_unread_answers_bounded),
    ("metrics_prometheus", tests_http.test_metrics),
    ("auth_refusals_401_and_open_paths", tests_auth.test_auth_refusals),
    ("auth_roles_and_scopes", tests_auth.test_auth_roles),
    ("auth_enterprise_key_cannot_change_operator_fields",
     tests_auth.test_enterprise_key_cannot_change_operator_fields),
    ("auth_enterprise_key_published_policies_only",
     tests_auth.test_enterprise_key_sees_published_policies_only),
    ("auth_keys_api", tests_auth.test_keys_api),
    ("auth_keys_list_adopts_older_records", tests_auth.test_keys_list_adopts_older_records),
    ("auth_revoked_in_redis_within_ttl", tests_auth.test_revoked_in_redis_refused_within_ttl),
    ("auth_cli_keys", tests_auth.test_cli_keys),
    ("auth_admin_key_bootstrap", tests_auth.test_admin_key_bootstrap),
    ("auth_rate_limits", tests_auth.test_rate_limits),
    ("auth_keys_not_in_logs", tests_auth.test_keys_not_in_logs),
    ("auth_import_streamed", tests_auth.test_import_auth),
    ("auth_keys_while_redis_down", tests_auth.test_keys_while_redis_down),
    ("auth_cached_key_while_redis_stalls", tests_auth.test_cached_key_while_redis_stalls),
    ("auth_key_refreshed_before_ttl", tests_auth.test_key_refreshed_before_ttl),
    ("faults_redis_kill9_under_write_load", tests_redis_faults.test_redis_kill_under_write_load),
    ("faults_huiqid_kill9_under_write_load", tests_faults.test_huiqid_kill9_under_write_load),
    ("faults_blackhole_redis", tests_faults.test_blackhole_redis),
    ("faults_redis_goes_silent", tests_redis_faults.test_redis_goes_silent),
    ("faults_redis_connect_deadline", tests_deadline.test_redis_connect_deadline),
    ("faults_redis_restart_storm", tests_faults.test_redis_restart_storm),
    ("faults_redis_restart_under_load", tests_redis_faults.test_redis_restart_under_load),
    ("faults_hanging_webhook_receiver", tests_faults.test_hanging_webhook_receiver),
    ("faults_publish_job_atomic", tests_faults.test_publish_job_atomic),
    ("faults_alloc_fail_register_enterprise", tests_alloc.test_alloc_fail_register_enterprise),
    ("faults_alloc_fail_register_policy", tests_alloc.test_alloc_fail_register_policy),
    ("faults_alloc_fail_publish_job", tests_alloc.test_alloc_fail_publish_job),
    ("docs_api_examples", tests_docs.test_docs_api_examples),
    ("docs_error_codes_documented", tests_docs.test_error_codes_documented),
    ("readme_examples", tests_docs.test_readme_examples),
    ("push_signed_and_batched", tests_push.test_push_signed_and_batched),
    ("push_deliveries_paging", tests_push.test_push_deliveries_paging),
    ("push_never_doubled", tests_push.test_push_never_doubled),
    ("push_receiver_faults_then_recovers", tests_push.test_push_receiver_faults_then_recovers),
    ("push_410_disables", tests_push.test_push_410_disables),
    ("push_retry_after_honoured", tests_push.test_push_retry_after_honoured),
    ("push_3xx_is_a_failure", tests_push.test_push_3xx_is_a_failure),
    ("push_dead_letter_and_replay", tests_push.test_push_dead_letter_and_replay),
    ("push_expires_when_withdrawn", tests_push.test_push_expires_when_withdrawn),
    ("push_auto_mode_grants", tests_push.test_push_auto_mode_grants),
    ("push_change_driven", tests_push.test_push_change_driven),
    ("push_rotation", tests_push.test_push_rotation),
    ("push_ssrf_rules", tests_push.test_push_ssrf_rules),
    ("push_job_cancel_and_withdraw", tests_push.test_push_job_cancel_and_withdraw),
    ("push_ids_out_of_range", tests_push.test_ids_out_of_range),
    ("push_webhook_events_set_and_noop_patch", tests_push.test_webhook_events_set_and_noop_patch),
    ("push_kill9_mid_job", tests_push.test_push_kill9_mid_job),
    ("push_redis_restart_mid_job", tests_push.test_push_redis_restart_mid_job),
    ("push_retry_schedule_jitter", tests_push_faults.test_push_retry_schedule_jitter),
    ("push_endpoint_isolation", tests_push_faults.test_push_endpoint_isolation),
    ("push_deferred_recalled", tests_push_faults.test_push_deferred_recalled),
    ("push_ssrf_names", tests_push_faults.test_push_ssrf_names),
    ("push_sign_verifier_constant_time", tests_push_faults.test_sign_verifier_constant_time),
    ("push_kill_storm_quick", tests_push_faults.test_push_kill_storm_quick),
]

# The long runs of the reliability checklist (shared/reliability.md section 8) at
# their full size: `make reliability` (--long), run by .ci/run, never by `make test`.
# Each keeps its quick version in TESTS above.
LONG_TESTS = [
    ("faults_redis_kill9_ten_trials", tests_redis_faults.test_redis_kill_ten_trials),
    ("faults_blackhole_redis_100_cycles", tests_faults.test_blackhole_redis_100_cycles),
    ("faults_redis_restart_storm_60s", tests_faults.test_redis_restart_storm_60s),
    ("faults_redis_restarts_under_load", tests_redis_faults.test_redis_restarts_under_load),
    ("push_kill_storm_100k", tests_push_faults.test_push_kill_storm_100k),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--huiqid", required=True, help="path to the huiqid binary")
    ap.add_argument("--sanitized", action="store_true",
                    help="huiqid is an ASan+UBSan build: longer timeouts, sanitizer checks")
    ap.add_argument("--valgrind", action="store_true",
                    help="huiqid is a valgrind wrapper (tests/valgrind_huiqid.sh): as --sanitized, "
                         "and the allocation-failure tests are skipped (failmalloc.so cannot "
                         "wrap valgrind's allocator: it would fail nothing)")
    ap.add_argument("--filter", default="", help="run only tests whose name contains this")
    ap.add_argument("--long", action="store_true",
                    help="run the long reliability runs (LONG_TESTS) instead of the suite")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each test's duration")
    ap.add_argument("--keepalive", choices=("auto", "on", "off"), default="auto",
                    help="whether tests reuse one connection (auto: probe the server once; "
                         "the http_keepalive_* tests always use keep-alive)")
    args = ap.parse_args()

    if not os.access(args.huiqid, os.X_OK):
        print("FAIL setup: %s is not an executable" % args.huiqid)
        print("0 passed, 1 failed")
        return 1
    for tool in ("redis-server",):
        if shutil.which(tool) is None:
            print("FAIL setup: %s not found on PATH" % tool)
            print("0 passed, 1 failed")
            return 1

    opts = harness.Options(args.huiqid, sanitized=args.sanitized or args.valgrind,
                           verbose=args.verbose)
    selected = [(n, f) for n, f in (LONG_TESTS if args.long else TESTS) if args.filter in n]
    if args.valgrind:
        for n, _ in selected:
            if n.startswith("faults_alloc_fail"):
                print("skip %s (under valgrind)" % n)
        selected = [(n, f) for n, f in selected if not n.startswith("faults_alloc_fail")]

    if args.keepalive == "auto":
        try:
            opts.keepalive = probe(opts)
        except Exception as e:  # the tests themselves will say what is wrong
            print("note: keep-alive probe could not run (%s)" % str(e).splitlines()[0])
            opts.keepalive = False
        if not opts.keepalive:
            print("note: keep-alive probe failed (a 2nd request on a connection got no answer); "
                  "tests use one connection per request, http_keepalive_sequential covers it")
    else:
        opts.keepalive = args.keepalive == "on"

    passed = failed = 0
    t_all = time.monotonic()
    try:
        for name, fn in selected:
            ok = run_one(name, fn, opts, args.verbose)
            passed += ok
            failed += not ok
    except KeyboardInterrupt:
        for env in harness.ENVS:
            env.close()
            env.cleanup_dir()
        print("interrupted")
        failed += 1
    if args.verbose:
        print("total %.1fs" % (time.monotonic() - t_all))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


def run_one(name, fn, opts, verbose):
    """Runs one test; prints its line (and details on failure). True when it passed."""
    harness.ENVS.clear()
    t0 = time.monotonic()
    err = None
    try:
        fn(opts)
    except harness.TestFailure as e:
        err = str(e)
    except Exception:  # an unexpected error is a failure too, with its trace
        err = traceback.format_exc()
    # Stop whatever the test left running; stop problems (exit code, sanitizer
    # reports) fail the test too.
    for env in harness.ENVS:
        env.close()
        if env.problems and not env.problems_reported:
            env.problems_reported = True
            more = "; ".join(env.problems)
            err = more if err is None else err.rstrip() + "\n" + more
    dt = time.monotonic() - t0
    took = " (%.2fs)" % dt if verbose else ""
    if err is None:
        print("ok   %s%s" % (name, took))
    else:
        print("FAIL %s%s" % (name, took))
        for line in err.rstrip().splitlines():
            print("     " + line)
        for env in harness.ENVS:
            for line in env.log_tail(25).splitlines():
                print("     | " + line)
    sys.stdout.flush()
    for env in harness.ENVS:
        env.cleanup_dir()
    harness.ENVS.clear()
    return err is None


def probe(opts):
    env = harness.Env(opts)
    try:
        return harness.probe_keepalive(env.huiqid_port, timeout=2.0 * opts.slow)
    finally:
        env.close()
        env.cleanup_dir()
        harness.ENVS.clear()


if __name__ == "__main__":
    sys.exit(main())
