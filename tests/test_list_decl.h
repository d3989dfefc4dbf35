/* Prototypes of every test in tests/test_list.h, so test files satisfy
 * -Wmissing-prototypes. */
#ifndef HUIQI_TESTS_TEST_LIST_DECL_H
#define HUIQI_TESTS_TEST_LIST_DECL_H
#define TEST(name) int test_##name(void);
#include "tests/test_list.h"
#undef TEST
#endif
