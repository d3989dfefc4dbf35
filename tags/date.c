/* Civil-date arithmetic; see date.h. The conversions follow the well-known
 * days-from-civil algorithm over 400-year eras. */
#include "tags/date.h"

#include <errno.h>

int32_t date_from_ymd(int y, int m, int d) {
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (int32_t)(era * 146097 + doe - 719468);
}

void date_to_ymd(int32_t days, int *y, int *m, int *d) {
    int z = days + 719468;
    int era = (z >= 0 ? z : z - 146096) / 146097;
    int doe = z - era * 146097;
    int yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}

static int date_leap(int y) {
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int date_month_days(int y, int m) {
    static const int len[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && date_leap(y) ? 29 : len[m - 1];
}

static int date_digits(const char *s, int n) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int date_parse(const char *s, size_t len, int32_t *days) {
    if (len != 10 || s[4] != '-' || s[7] != '-') {
        return -EINVAL;
    }
    int y = date_digits(s, 4);
    int m = date_digits(s + 5, 2);
    int d = date_digits(s + 8, 2);
    if (y < 1900 || y > 2999 || m < 1 || m > 12 || d < 1 || d > date_month_days(y, m)) {
        return -EINVAL;
    }
    *days = date_from_ymd(y, m, d);
    return 0;
}

void date_format(int32_t days, char *out) {
    int y, m, d;
    date_to_ymd(days, &y, &m, &d);
    y = y < 0 ? 0 : y % 10000;
    out[0] = (char)('0' + y / 1000);
    out[1] = (char)('0' + y / 100 % 10);
    out[2] = (char)('0' + y / 10 % 10);
    out[3] = (char)('0' + y % 10);
    out[4] = '-';
    out[5] = (char)('0' + m / 10);
    out[6] = (char)('0' + m % 10);
    out[7] = '-';
    out[8] = (char)('0' + d / 10);
    out[9] = (char)('0' + d % 10);
    out[10] = '\0';
}

int32_t date_at(time_t t, int utc_offset_min) {
    long long s = (long long)t + (long long)utc_offset_min * 60;
    long long day = s / 86400;
    if (s % 86400 < 0) {
        day--;
    }
    return (int32_t)day;
}

int date_years_between(int32_t from, int32_t to) {
    int fy, fm, fd, ty, tm, td;
    date_to_ymd(from, &fy, &fm, &fd);
    date_to_ymd(to, &ty, &tm, &td);
    int years = ty - fy;
    if (tm < fm || (tm == fm && td < fd)) {
        years--;
    }
    return years;
}

int32_t date_add_years(int32_t days, int years) {
    int y, m, d;
    date_to_ymd(days, &y, &m, &d);
    y += years;
    if (d > date_month_days(y, m)) {
        d = date_month_days(y, m);
    }
    return date_from_ymd(y, m, d);
}
