/* The Lua scripts behind every write. Each one checks and changes its keys in one
 * atomic step inside Redis, so two requests racing on the same enterprise or policy
 * are ordered by Redis, and the reply says exactly what happened. Numbers come back
 * as integers, statuses as strings. Keys are derived inside the scripts, which
 * standalone Redis allows (this service does not run on Redis Cluster). */
#include "store/internal.h"

const char *const store__script_text[STORE_NSCRIPTS] = {
    /* ENT_PUT: ARGV uscc, mode (create|upsert|update), expected version or '', doc,
     * index record, now_ms, retag day or ''. Returns ok, ord, ver, created (0/1),
     * created_ms, updated_ms, changed (0/1). Writing the very same document and
     * record again changes nothing, not even the version. hq:retag holds every
     * enterprise whose tags will change with time, scored by the day they do. */
    "local k = 'hq:ent:' .. ARGV[1]\n"
    "local cur = redis.call('HMGET', k, 'ver', 'ord', 'created', 'updated', 'doc')\n"
    "local ver, ord, created, cms\n"
    "if cur[1] then\n"
    "  if ARGV[2] == 'create' then return {'exists', tonumber(cur[1])} end\n"
    "  if ARGV[3] ~= '' and ARGV[3] ~= cur[1] then return {'stale', tonumber(cur[1])} end\n"
    "  ord = tonumber(cur[2])\n"
    "  cms = tonumber(cur[3] or ARGV[6])\n"
    "  if cur[5] == ARGV[4] and\n"
    "     redis.call('HGET', 'hq:idx:' .. math.floor(ord / 128), ord) == ARGV[5] then\n"
    "    return {'ok', ord, tonumber(cur[1]), 0, cms, tonumber(cur[4] or cms), 0}\n"
    "  end\n"
    "  ver = tonumber(cur[1]) + 1\n"
    "  created = 0\n"
    "else\n"
    "  if ARGV[2] == 'update' then return {'missing'} end\n"
    "  local f = redis.call('LPOP', 'hq:ord:free')\n"
    "  if f then ord = tonumber(f) else ord = redis.call('INCR', 'hq:ord:next') - 1 end\n"
    "  ver = 1\n"
    "  created = 1\n"
    "  cms = tonumber(ARGV[6])\n"
    "end\n"
    "redis.call('HSET', k, 'doc', ARGV[4], 'ver', ver, 'ord', ord, 'created', cms,\n"
    "  'updated', ARGV[6])\n"
    "redis.call('HSET', 'hq:idx:' .. math.floor(ord / 128), ord, ARGV[5])\n"
    "if ARGV[7] ~= '' then redis.call('ZADD', 'hq:retag', ARGV[7], ARGV[1])\n"
    "else redis.call('ZREM', 'hq:retag', ARGV[1]) end\n"
    "return {'ok', ord, ver, created, cms, tonumber(ARGV[6]), 1}\n",

    /* ENT_DEL: ARGV uscc. Freed ordinals queue at the tail, reused from the head. */
    "local k = 'hq:ent:' .. ARGV[1]\n"
    "local ord = redis.call('HGET', k, 'ord')\n"
    "if not ord then return {'missing'} end\n"
    "redis.call('DEL', k)\n"
    "redis.call('HDEL', 'hq:idx:' .. math.floor(tonumber(ord) / 128), ord)\n"
    "redis.call('RPUSH', 'hq:ord:free', ord)\n"
    "redis.call('ZREM', 'hq:retag', ARGV[1])\n"
    "return {'ok', tonumber(ord)}\n",

    /* POL_CREATE: ARGV doc, meta, now_ms. */
    "local id = redis.call('INCR', 'hq:pol:seq')\n"
    "redis.call('HSET', 'hq:pol:' .. id, 'doc', ARGV[1], 'meta', ARGV[2], 'ver', 1,\n"
    "  'status', 'draft', 'created', ARGV[3], 'updated', ARGV[3], 'published', 0)\n"
    "redis.call('SADD', 'hq:pols', id)\n"
    "return {'ok', id, 1, 'draft', tonumber(ARGV[3]), tonumber(ARGV[3]), 0}\n",

    /* POL_UPDATE: ARGV id, doc, meta, expected version or '', now_ms. */
    "local k = 'hq:pol:' .. ARGV[1]\n"
    "local cur = redis.call('HMGET', k, 'ver', 'status', 'created', 'published')\n"
    "if not cur[1] then return {'missing'} end\n"
    "if ARGV[4] ~= '' and ARGV[4] ~= cur[1] then return {'stale', tonumber(cur[1])} end\n"
    "local ver = tonumber(cur[1]) + 1\n"
    "redis.call('HSET', k, 'doc', ARGV[2], 'meta', ARGV[3], 'ver', ver, 'updated', ARGV[5])\n"
    "return {'ok', tonumber(ARGV[1]), ver, cur[2], tonumber(cur[3]), tonumber(ARGV[5]),\n"
    "  tonumber(cur[4])}\n",

    /* POL_DEL: ARGV id. */
    "local k = 'hq:pol:' .. ARGV[1]\n"
    "if redis.call('EXISTS', k) == 0 then return {'missing'} end\n"
    "redis.call('DEL', k)\n"
    "redis.call('SREM', 'hq:pols', ARGV[1])\n"
    "return {'ok'}\n",

    /* POL_STATUS: ARGV id, publish|withdraw, now_ms. Repeating a transition that is
     * already done succeeds unchanged; other moves are refused with the state. */
    "local k = 'hq:pol:' .. ARGV[1]\n"
    "local cur = redis.call('HMGET', k, 'ver', 'status', 'created', 'updated', 'published')\n"
    "if not cur[1] then return {'missing'} end\n"
    "local st = cur[2]\n"
    "local to = 'withdrawn'\n"
    "if ARGV[2] == 'publish' then to = 'published' end\n"
    "if st == to then\n"
    "  return {'ok', tonumber(ARGV[1]), tonumber(cur[1]), st, tonumber(cur[3]),\n"
    "    tonumber(cur[4]), tonumber(cur[5])}\n"
    "end\n"
    "if to == 'withdrawn' and st ~= 'published' then return {'state', st} end\n"
    "local ver = tonumber(cur[1]) + 1\n"
    "local pub = tonumber(cur[5])\n"
    "if to == 'published' then pub = tonumber(ARGV[3]) end\n"
    "redis.call('HSET', k, 'status', to, 'ver', ver, 'updated', ARGV[3], 'published', pub)\n"
    "return {'ok', tonumber(ARGV[1]), ver, to, tonumber(cur[3]), tonumber(ARGV[3]), pub}\n",

    /* TAX_APPEND: ARGV vocab, then code, bit pairs. Refuses to move a stored code or
     * to give a bit that another code holds. */
    "local k = 'hq:tax:' .. ARGV[1]\n"
    "local all = redis.call('HGETALL', k)\n"
    "local code_bit, bit_code = {}, {}\n"
    "for i = 1, #all, 2 do code_bit[all[i]] = all[i + 1]; bit_code[all[i + 1]] = all[i] end\n"
    "for i = 2, #ARGV, 2 do\n"
    "  local c, b = ARGV[i], ARGV[i + 1]\n"
    "  if code_bit[c] and code_bit[c] ~= b then return {'conflict', c, code_bit[c]} end\n"
    "  if bit_code[b] and bit_code[b] ~= c then return {'conflict', bit_code[b], b} end\n"
    "end\n"
    "for i = 2, #ARGV, 2 do redis.call('HSET', k, ARGV[i], ARGV[i + 1]) end\n"
    "return {'ok'}\n",
};
