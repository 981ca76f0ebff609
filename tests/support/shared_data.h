/*
 * shared_data.h — what a test does when the recorded market data in
 * ../shared/data (CQ_SHARED_DIR, compiled in by tests/meson.build) is not
 * there: on a user's clone it skips with a message saying where the data
 * goes; when CI is set (anything but empty, "0" or "false") it fails,
 * because CI always has the data.
 */
#ifndef CQ_TEST_SHARED_DATA_H
#define CQ_TEST_SHARED_DATA_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static inline bool cq_test_ci_set(void)
{
    const char *ci = getenv("CI");
    return ci != NULL && ci[0] != '\0' && strcmp(ci, "false") != 0 && strcmp(ci, "0") != 0;
}

/* Skips the current test, or fails it under CI; does not return. */
static inline void cq_test_shared_missing(const char *path)
{
    if (cq_test_ci_set()) {
        cr_assert_fail("%s is missing and CI is set: put ../shared/data beside the repository",
                       path);
    }
    cr_skip_test("%s is missing: put ../shared/data beside the repository to run this test "
                 "(set CI to make this a failure)",
                 path);
}

#endif /* CQ_TEST_SHARED_DATA_H */
