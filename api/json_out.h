/* A compact JSON writer for jansson values, several times faster than json_dumps
 * on our documents (jansson re-validates every UTF-8 string it writes; our strings
 * were validated when they entered). Output equals json_dumps(v, JSON_COMPACT)
 * except that reals are printed with %.17g. */
#ifndef HUIQI_API_JSON_OUT_H
#define HUIQI_API_JSON_OUT_H

#include <jansson.h>

#include "common/sbuf.h"

/* Appends the JSON text of 'v' to 's'. */
void json_out(sbuf_t *s, const json_t *v);
/* The JSON text of 'v' as a new NUL-terminated string (free with free()); its
 * length in '*len'. */
char *json_out_str(const json_t *v, size_t *len);

#endif
