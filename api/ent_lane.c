/* Per-enterprise lanes (see ent_lane.h): a small chained hash from credit code to
 * a FIFO of waiting updates. */
#include "api/ent_lane.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

/* Lanes exist only while an update of their code runs, so a few hundred at most
 * even under load: a fixed table is enough. */
#define LANE_BUCKETS 256

typedef struct lane {
    struct lane *next;
    char uscc[19];
    unsigned waiting;
    ent_lane_wait_t *head, *tail;
} lane_t;

struct ent_lanes {
    lane_t *bucket[LANE_BUCKETS];
    unsigned max_waiting;
};

static unsigned lane_hash(const char *uscc) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < 18; i++) {
        h = (h ^ (unsigned char)uscc[i]) * 16777619u;
    }
    return h % LANE_BUCKETS;
}

static lane_t **lane_find(ent_lanes_t *l, const char *uscc) {
    lane_t **p = &l->bucket[lane_hash(uscc)];
    while (*p && memcmp((*p)->uscc, uscc, 18) != 0) {
        p = &(*p)->next;
    }
    return p;
}

ent_lanes_t *ent_lanes_new(unsigned max_waiting) {
    ent_lanes_t *l = xcalloc(1, sizeof *l);
    l->max_waiting = max_waiting;
    return l;
}

void ent_lanes_free(ent_lanes_t *l) {
    if (l == NULL) {
        return;
    }
    for (unsigned b = 0; b < LANE_BUCKETS; b++) {
        lane_t *ln = l->bucket[b];
        while (ln) {
            lane_t *next = ln->next;
            free(ln);
            ln = next;
        }
    }
    free(l);
}

int ent_lane_enter(ent_lanes_t *l, const char *uscc, ent_lane_wait_t *w) {
    lane_t **p = lane_find(l, uscc);
    lane_t *ln = *p;
    if (ln == NULL) {
        ln = xcalloc(1, sizeof *ln);
        memcpy(ln->uscc, uscc, 18);
        *p = ln;
        return 0;
    }
    if (ln->waiting >= l->max_waiting) {
        return -EBUSY;
    }
    w->next = NULL;
    if (ln->tail) {
        ln->tail->next = w;
    } else {
        ln->head = w;
    }
    ln->tail = w;
    ln->waiting++;
    return 1;
}

void ent_lane_leave(ent_lanes_t *l, const char *uscc) {
    lane_t **p = lane_find(l, uscc);
    lane_t *ln = *p;
    if (ln == NULL) {
        return;
    }
    ent_lane_wait_t *w = ln->head;
    if (w == NULL) {
        *p = ln->next;
        free(ln);
        return;
    }
    ln->head = w->next;
    if (ln->head == NULL) {
        ln->tail = NULL;
    }
    ln->waiting--;
    /* The lane is w's now. Nothing here is touched after start: it may finish at
     * once (a store that refuses the read) and leave, starting the next in turn. */
    w->start(w->arg);
}
