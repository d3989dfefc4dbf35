/* Re-deriving enterprise tags without stopping the API. Two kinds of pass share
 * one worker: the daily pass takes the enterprises whose tags are due to change
 * with time (hq:retag, filled by every write with the enterprise's retag_on day),
 * so an enterprise is re-tagged on its founding anniversary or when a certificate
 * starts or expires, never by rescanning everyone; the full pass, started by an
 * operator after a rules change, walks every enterprise. Each enterprise is read,
 * re-derived with the current rules and written back only when its tags changed,
 * with a bounded number of writes in flight. */
#ifndef HUIQI_API_RETAG_H
#define HUIQI_API_RETAG_H

#include <jansson.h>

struct app;
typedef struct retag retag_t;

retag_t *retag_new(struct app *app);
/* Stops the worker; in-flight operations finish, then 'done' runs. */
void retag_close(retag_t *r);
/* The store finished loading (at start, or after Redis came back): starts a daily
 * pass at once, which /readyz then waits for (retag_catching_up). */
void retag_on_loaded(retag_t *r);
/* Whether the pass after a load is still running (and not for too long). */
int retag_catching_up(const retag_t *r);
/* Starts a full pass. Returns 0, or -EBUSY when one is running. */
int retag_start_full(retag_t *r);
/* The state of the passes, as the API reports it (new reference). */
json_t *retag_status(const retag_t *r);

#endif
