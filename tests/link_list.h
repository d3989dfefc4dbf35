/* The explicit list of Redis link tests (tests/test_link.c, run by build/link_test),
 * in run order. Each starts its own redis-server on a free loopback port. */
TEST(adapter_free_from_connect_timer)
TEST(adapter_free_from_timer_with_replies_pending)
TEST(adapter_free_inside_reply)
TEST(adapter_disconnect_from_connect_timer_and_inside_reply)
TEST(link_close_from_connect_timer)
TEST(link_close_from_timer_with_replies_pending)
TEST(link_close_inside_reply)
TEST(link_reset_from_connect_timer)
TEST(link_reset_inside_reply)
TEST(link_deadline_kill_with_replies_pending)
