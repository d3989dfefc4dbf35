/* Calendar dates as days since 1970-01-01 (proleptic Gregorian), the unit in which
 * policy windows and founding dates are compared. Pure C, no time zone database:
 * "today" is computed for a fixed UTC offset (China uses +08:00 all year). */
#ifndef HUIQI_TAGS_DATE_H
#define HUIQI_TAGS_DATE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define DATE_NONE INT32_MIN /* "no date" (an open end of a window) */

/* Days since the epoch for a valid y-m-d; the caller ensures validity. */
int32_t date_from_ymd(int y, int m, int d);
void date_to_ymd(int32_t days, int *y, int *m, int *d);
/* Parses exactly "YYYY-MM-DD" (years 1900..2999, real month lengths) into '*days'.
 * Returns 0 or -EINVAL. */
int date_parse(const char *s, size_t len, int32_t *days);
/* Writes "YYYY-MM-DD" and a NUL into 'out' (at least 11 bytes). */
void date_format(int32_t days, char *out);
/* The calendar day at instant 't' in a zone 'utc_offset_min' minutes east of UTC. */
int32_t date_at(time_t t, int utc_offset_min);
/* Whole years from 'from' to 'to', counted by anniversaries: the year completes on
 * the same month and day (a 29 Feb start completes on 1 Mar in common years).
 * Negative when 'to' is before 'from'. */
int date_years_between(int32_t from, int32_t to);
/* 'days' plus 'years' calendar years (29 Feb becomes 28 Feb when needed). */
int32_t date_add_years(int32_t days, int years);

#endif
