/* API keys in Redis: hq:key:<id> hashes (hash of the secret, role, name, scope,
 * rate, created, revoked) and the hq:keys set. The secret itself is never stored. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "store/internal.h"

typedef struct key_op {
    store_hash_cb cb;
    void *arg;
} key_op_t;

static void key_on_hash(void *arg, redisReply *r) {
    key_op_t *op = arg;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        op->cb(op->arg, r == NULL ? -EIO : -EPROTO, NULL, 0);
    } else {
        store_kv_t *kv = xcalloc(r->elements / 2 + 1, sizeof *kv);
        size_t n = store__kv_from_reply(r, kv, r->elements / 2 + 1);
        op->cb(op->arg, n ? 0 : -ENOENT, kv, n);
        free(kv);
    }
    free(op);
}

static void key_on_records(void *arg, redisReply *r) {
    key_op_t *op = arg;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        op->cb(op->arg, r == NULL ? -EIO : -EPROTO, NULL, 0);
    } else {
        store_kv_t *kv = xcalloc(r->elements / 2 + 1, sizeof *kv);
        size_t n = store__kv_from_reply(r, kv, r->elements / 2 + 1);
        op->cb(op->arg, 0, kv, n);
        free(kv);
    }
    free(op);
}

static void key_on_created(void *arg, redisReply *r) {
    key_op_t *op = arg;
    int rc = r == NULL                        ? -EIO
             : r->type != REDIS_REPLY_INTEGER ? -EPROTO
             : r->integer == 0                ? -EEXIST
                                              : 0;
    op->cb(op->arg, rc, NULL, 0);
    free(op);
}

static void key_on_status(void *arg, redisReply *r) {
    key_op_t *op = arg;
    int rc = r == NULL ? -EIO : r->type == REDIS_REPLY_ERROR ? -EPROTO : 0;
    if (rc == 0 && r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
        rc = -ENOENT;
    }
    op->cb(op->arg, rc, NULL, 0);
    free(op);
}

static int key_send(store_t *s, store_link_reply_cb fn, store_hash_cb cb, void *arg, int argc,
                    const char **argv) {
    int usable = store__usable(s);
    if (usable) {
        return usable;
    }
    size_t lens[28];
    for (int i = 0; i < argc; i++) {
        lens[i] = strlen(argv[i]);
    }
    key_op_t *op = xcalloc(1, sizeof *op);
    op->cb = cb;
    op->arg = arg;
    int rc = store__link_command(s->link, fn, op, argc, argv, lens);
    if (rc) {
        free(op);
    }
    return rc;
}

int store_key_get(store_t *s, const char *kid, store_hash_cb cb, void *arg) {
    char key[64];
    snprintf(key, sizeof key, "hq:key:%.40s", kid);
    const char *argv[2] = {"HGETALL", key};
    return key_send(s, key_on_hash, cb, arg, 2, argv);
}

/* KEYS: the record, the id set, the creation index; ARGV: the id, then the field
 * pairs, "created" (ms) among them. tools/huiqi writes keys with the same script. */
#define KEY_PUT_LUA                                                        \
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"            \
    "redis.call('HSET', KEYS[1], unpack(ARGV, 2))\n"                       \
    "redis.call('SADD', KEYS[2], ARGV[1])\n"                               \
    "local created = 0\n"                                                  \
    "for i = 2, #ARGV - 1, 2 do\n"                                         \
    "  if ARGV[i] == 'created' then created = tonumber(ARGV[i + 1]) end\n" \
    "end\n"                                                                \
    "redis.call('ZADD', KEYS[3], created or 0, ARGV[1])\n"                 \
    "return 1\n"

int store_key_put(store_t *s, const char *kid, const char *const *fields, unsigned nfields,
                  store_hash_cb cb, void *arg) {
    if (nfields > 20 || nfields % 2) {
        return -EINVAL;
    }
    char key[64];
    snprintf(key, sizeof key, "hq:key:%.40s", kid);
    /* Create-only, and the record with its index in one step: a reader that finds
     * the id in the set always finds its record, and an id is never reused (not
     * even one revoked, whose record stays as its tombstone). */
    const char *argv[28] = {"EVAL", KEY_PUT_LUA, "3", key, "hq:keys", "hq:keys:by_created", kid};
    for (unsigned i = 0; i < nfields; i++) {
        argv[7 + i] = fields[i];
    }
    return key_send(s, key_on_created, cb, arg, 7 + (int)nfields, argv);
}

int store_key_list(store_t *s, uint64_t offset, unsigned limit, store_hash_cb cb, void *arg) {
    /* Pages come from hq:keys:by_created (scored by creation time; ties in id
     * order). Keys made before that index existed, or by an older CLI, are in
     * hq:keys only: they are added here, once, when the two counts differ. Keys are
     * never deleted (a revoked key stays as its tombstone), so a position stays the
     * same key and the offset is a stable cursor. */
    const char *script = "local n = redis.call('SCARD', KEYS[1])\n"
                         "if redis.call('ZCARD', KEYS[2]) ~= n then\n"
                         "  for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
                         "    if not redis.call('ZSCORE', KEYS[2], id) then\n"
                         "      local c = redis.call('HGET', 'hq:key:' .. id, 'created')\n"
                         "      redis.call('ZADD', KEYS[2], tonumber(c) or 0, id)\n"
                         "    end\n"
                         "  end\n"
                         "end\n"
                         "local out = {'total', tostring(n)}\n"
                         "local from = tonumber(ARGV[1])\n"
                         "for _, id in ipairs(redis.call('ZRANGE', KEYS[2], from,\n"
                         "    from + tonumber(ARGV[2]) - 1)) do\n"
                         "  out[#out + 1] = 'id'\n"
                         "  out[#out + 1] = id\n"
                         "  for _, v in ipairs(redis.call('HGETALL', 'hq:key:' .. id)) do\n"
                         "    out[#out + 1] = v\n"
                         "  end\n"
                         "end\n"
                         "return out\n";
    if (limit == 0) {
        return -EINVAL;
    }
    char from[24], count[16];
    snprintf(from, sizeof from, "%llu", (unsigned long long)offset);
    snprintf(count, sizeof count, "%u", limit);
    const char *argv[7] = {"EVAL", script, "2", "hq:keys", "hq:keys:by_created", from, count};
    return key_send(s, key_on_records, cb, arg, 7, argv);
}

int store_key_revoke(store_t *s, const char *kid, int64_t now_ms, store_hash_cb cb, void *arg) {
    char key[64], now[24];
    snprintf(key, sizeof key, "hq:key:%.40s", kid);
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    /* HSET on a missing key would create it: check existence in the same step. */
    const char *script = "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
                         "if redis.call('HEXISTS', KEYS[1], 'revoked') == 0 then\n"
                         "  redis.call('HSET', KEYS[1], 'revoked', ARGV[1])\n"
                         "end\n"
                         "return 1\n";
    const char *argv[5] = {"EVAL", script, "1", key, now};
    return key_send(s, key_on_status, cb, arg, 5, argv);
}
