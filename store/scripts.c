/* The Lua scripts behind every write. Each one checks and changes its keys in one
 * atomic step inside Redis, so two requests racing on the same enterprise or policy
 * are ordered by Redis, and the reply says exactly what happened. Numbers come back
 * as integers, statuses as strings. Keys are derived inside the scripts, which
 * standalone Redis allows (this service does not run on Redis Cluster). */
#include "store/internal.h"

/* Shared by JOB_STEP and PUSH_ENT: notify enterprise 'u' (ordinal 'ord') about
 * policy 'pol' unless it already was (the per-policy sent bitmap makes every
 * notice go out once, whatever reruns a job or a restart cause). Returns the
 * deliveries queued, or -1 when it had been notified before. Delivery ids are
 * derived from what they are about, so a repeat can only ever carry the same id. */
#define NOTIFY_LUA                                                                                 \
    "local function notify(pol, mode, pver, ord, u, job, now, subm, subg)\n"                       \
    "  if redis.call('SETBIT', 'hq:sent:' .. pol, ord, 1) == 1 then return -1 end\n"               \
    "  local n = 0\n"                                                                              \
    "  for _, w in ipairs(subm) do\n"                                                              \
    "    redis.call('XADD', 'hq:q', '*', 'id', 'msg_' .. pol .. '_' .. u .. '_' .. w,\n"           \
    "      'ev', 'policy.matched', 'wh', w, 'pol', pol, 'u', u, 'job', job)\n"                     \
    "    n = n + 1\n"                                                                              \
    "  end\n"                                                                                      \
    "  local own = redis.call('HGET', 'hq:entwh', u)\n"                                            \
    "  if own then\n"                                                                              \
    "    redis.call('XADD', 'hq:q', '*', 'id', 'msg_' .. pol .. '_' .. u .. '_ent',\n"             \
    "      'ev', 'policy.matched', 'wh', 'ent', 'url', own, 'pol', pol, 'u', u, 'job', job)\n"     \
    "    n = n + 1\n"                                                                              \
    "  end\n"                                                                                      \
    "  if mode == 'auto' then\n"                                                                   \
    "    redis.call('HSETNX', 'hq:grant:' .. pol, u, now .. ':' .. pver)\n"                        \
    "    for _, w in ipairs(subg) do\n"                                                            \
    "      redis.call('XADD', 'hq:q', '*', 'id', 'msg_' .. pol .. '_' .. u .. '_' .. w .. '_g',\n" \
    "        'ev', 'policy.granted', 'wh', w, 'pol', pol, 'u', u, 'job', job)\n"                   \
    "      n = n + 1\n"                                                                            \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  return n\n"                                                                                 \
    "end\n"                                                                                        \
    "local function batch_of(w)\n"                                                                 \
    "  return tonumber(redis.call('HGET', 'hq:wh:' .. w, 'batch')) or 500\n"                       \
    "end\n"

/* Shared by JOB_CREATE and POL_STATUS: a new running job for policy 'pol' (its
 * version 'pver', mode 'apply' or 'auto', 'audience' enterprises counted by the
 * caller); returns its id. Its first write is the INCR, which fails on a broken
 * counter before anything else is written. */
#define JOB_CREATE_LUA                                                                         \
    "local function job_create(pol, kind, mode, pver, audience, now)\n"                        \
    "  local id = redis.call('INCR', 'hq:job:seq')\n"                                          \
    "  local k = 'hq:job:' .. id\n"                                                            \
    "  redis.call('HSET', k, 'policy', pol, 'kind', kind, 'mode', mode, 'pver', pver,\n"       \
    "    'audience', audience, 'state', 'running', 'cursor', 0, 'matched', 0, 'skipped', 0,\n" \
    "    'queued', 0, 'delivered', 0, 'failed', 0, 'expired', 0, 'created', now,\n"            \
    "    'updated', now, 'scanned', 0)\n"                                                      \
    "  redis.call('SADD', 'hq:jobs:running', id)\n"                                            \
    "  redis.call('ZADD', 'hq:jobs', now, id)\n"                                               \
    "  return id\n"                                                                            \
    "end\n"

/* Shared by Q_MOVE, Q_RECALL and DLV_REQUEUE: delivery 'id' goes back into the
 * queue, marked as a retry (its record keeps the body and the attempts), and as a
 * replay when 'replay' is true. Returns false, queueing nothing, when it has no
 * record. Leaving the retry set is the caller's step. */
#define Q_REQUEUE_LUA                                                                            \
    "local function requeue(id, replay)\n"                                                       \
    "  local k = 'hq:dlv:' .. id\n"                                                              \
    "  local f = redis.call('HMGET', k, 'ev', 'wh', 'pol', 'u', 'job', 'url', 'added', "         \
    "'removed')\n"                                                                               \
    "  if not f[1] then return false end\n"                                                      \
    "  local a = {'id', id, 'ev', f[1], 'wh', f[2] or '', 'pol', f[3] or '', 'u', f[4] or '',\n" \
    "    'job', f[5] or '', 'url', f[6] or '', 'added', f[7] or '', 'removed', f[8] or '',\n"    \
    "    'retry', '1'}\n"                                                                        \
    "  if replay then a[#a + 1] = 'replay'; a[#a + 1] = '1' end\n"                               \
    "  redis.call('XADD', 'hq:q', '*', unpack(a))\n"                                             \
    "  redis.call('HSET', k, 'state', 'queued')\n"                                               \
    "  return true\n"                                                                            \
    "end\n"

const char *const store__script_text[STORE_NSCRIPTS] = {
    /* ENT_PUT: ARGV uscc, mode (create|upsert|update), expected version or '', doc,
     * index record, now_ms, retag day or '', own webhook URL or '', card or ''.
     * Returns ok, ord,
     * ver, created (0/1),
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
    "if ARGV[8] ~= '' then redis.call('HSET', 'hq:entwh', ARGV[1], ARGV[8])\n"
    "else redis.call('HDEL', 'hq:entwh', ARGV[1]) end\n"
    "if ARGV[9] and ARGV[9] ~= '' then redis.call('HSET', k, 'card', ARGV[9])\n"
    "else redis.call('HDEL', k, 'card') end\n"
    "return {'ok', ord, ver, created, cms, tonumber(ARGV[6]), 1}\n",

    /* ENT_DEL: ARGV uscc. Freed ordinals queue at the tail, reused from the head. */
    "local k = 'hq:ent:' .. ARGV[1]\n"
    "local ord = redis.call('HGET', k, 'ord')\n"
    "if not ord then return {'missing'} end\n"
    "redis.call('DEL', k)\n"
    "redis.call('HDEL', 'hq:idx:' .. math.floor(tonumber(ord) / 128), ord)\n"
    "redis.call('RPUSH', 'hq:ord:free', ord)\n"
    "redis.call('ZREM', 'hq:retag', ARGV[1])\n"
    "redis.call('HDEL', 'hq:entwh', ARGV[1])\n"
    /* The ordinal will be reused: whoever gets it has not been notified of
     * anything yet. */
    "for _, p in ipairs(redis.call('SMEMBERS', 'hq:pols')) do\n"
    "  if redis.call('EXISTS', 'hq:sent:' .. p) == 1 then\n"
    "    redis.call('SETBIT', 'hq:sent:' .. p, ord, 0)\n"
    "  end\n"
    "end\n"
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
    "redis.call('DEL', k, 'hq:sent:' .. ARGV[1])\n"
    "redis.call('SREM', 'hq:pols', ARGV[1])\n"
    "return {'ok'}\n",

    /* POL_STATUS: ARGV id, publish|withdraw, now_ms, then for a publish that starts
     * the policy's push job: the job's kind and audience. Repeating a transition that
     * is already done succeeds unchanged (and starts no job); other moves are refused
     * with the state. The job is made in this same script, so a published policy
     * never lacks it whatever fails (reliability-checklist B8). Its writes come before
     * the policy's: a script stopped by an error in between keeps what it wrote, and
     * a job whose policy is not published only ends 'cancelled' at its first step.
     * The mode is the policy's as stored: byte 10 of its meta (store/codec.c). Replies
     * {'ok', id, ver, status, created, updated, published, job id or 0}. */
    JOB_CREATE_LUA
    "local k = 'hq:pol:' .. ARGV[1]\n"
    "local cur = redis.call('HMGET', k, 'ver', 'status', 'created', 'updated', 'published',\n"
    "  'meta')\n"
    "if not cur[1] then return {'missing'} end\n"
    "local st = cur[2]\n"
    "local to = 'withdrawn'\n"
    "if ARGV[2] == 'publish' then to = 'published' end\n"
    "if st == to then\n"
    "  return {'ok', tonumber(ARGV[1]), tonumber(cur[1]), st, tonumber(cur[3]),\n"
    "    tonumber(cur[4]), tonumber(cur[5]), 0}\n"
    "end\n"
    "if to == 'withdrawn' and st ~= 'published' then return {'state', st} end\n"
    "local ver = tonumber(cur[1]) + 1\n"
    "local pub = tonumber(cur[5])\n"
    "local job = 0\n"
    "if to == 'published' then\n"
    "  pub = tonumber(ARGV[3])\n"
    "  if ARGV[4] then\n"
    "    local mode = 'apply'\n"
    "    if cur[6] and string.byte(cur[6], 10) == 1 then mode = 'auto' end\n"
    "    job = job_create(ARGV[1], ARGV[4], mode, ver, ARGV[5], ARGV[3])\n"
    "  end\n"
    "end\n"
    "redis.call('HSET', k, 'status', to, 'ver', ver, 'updated', ARGV[3], 'published', pub)\n"
    "return {'ok', tonumber(ARGV[1]), ver, to, tonumber(cur[3]), tonumber(ARGV[3]), pub, job}\n",

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
    /* WH_PUT: ARGV id or '', expected version or '', now_ms, doc, url, events (bit
     * mask), secrets, sk, rate, inflight, batch, state, reason. */
    "local id = ARGV[1]\n"
    "local ver, created\n"
    "if id == '' then\n"
    "  id = tostring(redis.call('INCR', 'hq:wh:seq'))\n"
    "  ver = 1\n"
    "  created = ARGV[3]\n"
    "else\n"
    "  local cur = redis.call('HMGET', 'hq:wh:' .. id, 'ver', 'created')\n"
    "  if not cur[1] then return {'missing'} end\n"
    "  if ARGV[2] ~= '' and ARGV[2] ~= cur[1] then return {'stale', tonumber(cur[1])} end\n"
    "  ver = tonumber(cur[1]) + 1\n"
    "  created = cur[2]\n"
    "end\n"
    "local k = 'hq:wh:' .. id\n"
    "redis.call('HSET', k, 'doc', ARGV[4], 'url', ARGV[5], 'events', ARGV[6], 'secrets', ARGV[7],\n"
    "  'sk', ARGV[8], 'rate', ARGV[9], 'inflight', ARGV[10], 'batch', ARGV[11], 'state', "
    "ARGV[12],\n"
    "  'reason', ARGV[13], 'ver', ver, 'created', created, 'updated', ARGV[3])\n"
    "redis.call('SADD', 'hq:whs', id)\n"
    "local evs = {'policy.matched', 'package.batch', 'policy.granted', "
    "'enterprise.package_changed'}\n"
    "local mask = tonumber(ARGV[6])\n"
    "for i, ev in ipairs(evs) do\n"
    "  if bit.band(mask, bit.lshift(1, i - 1)) ~= 0 and ARGV[12] == 'active' then\n"
    "    redis.call('SADD', 'hq:whev:' .. ev, id)\n"
    "  else\n"
    "    redis.call('SREM', 'hq:whev:' .. ev, id)\n"
    "  end\n"
    "end\n"
    "return {'ok', tonumber(id), ver, tonumber(created), tonumber(ARGV[3])}\n",

    /* WH_DEL: ARGV id. */
    "local k = 'hq:wh:' .. ARGV[1]\n"
    "if redis.call('EXISTS', k) == 0 then return {'missing'} end\n"
    "redis.call('DEL', k)\n"
    "redis.call('SREM', 'hq:whs', ARGV[1])\n"
    "for _, ev in ipairs({'policy.matched', 'package.batch', 'policy.granted',\n"
    "    'enterprise.package_changed'}) do\n"
    "  redis.call('SREM', 'hq:whev:' .. ev, ARGV[1])\n"
    "end\n"
    "return {'ok'}\n",

    /* JOB_CREATE: ARGV policy, kind, mode, policy version, audience, now_ms. */
    JOB_CREATE_LUA
    "return {'ok', job_create(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])}\n",

    /* JOB_STEP: ARGV job, policy, cursor, next, now_ms, then ordinal, code pairs. */
    NOTIFY_LUA
    "local jk = 'hq:job:' .. ARGV[1]\n"
    "local j = redis.call('HMGET', jk, 'state', 'cursor', 'mode', 'pver')\n"
    "if j[1] ~= 'running' then return {'state', j[1] or 'missing'} end\n"
    "if j[2] ~= ARGV[3] then return {'cursor', j[2]} end\n"
    "local pol = ARGV[2]\n"
    "local subm = redis.call('SMEMBERS', 'hq:whev:policy.matched')\n"
    "local subg = redis.call('SMEMBERS', 'hq:whev:policy.granted')\n"
    "local subb = redis.call('SMEMBERS', 'hq:whev:package.batch')\n"
    "local newly = {}\n"
    "local queued = 0\n"
    "local pairs_n = 0\n"
    "for i = 6, #ARGV, 2 do\n"
    "  pairs_n = pairs_n + 1\n"
    "  local q = notify(pol, j[3], j[4], ARGV[i], ARGV[i + 1], ARGV[1], ARGV[5], subm, subg)\n"
    "  if q >= 0 then\n"
    "    newly[#newly + 1] = ARGV[i + 1]\n"
    "    queued = queued + q\n"
    "  end\n"
    "end\n"
    "if #newly > 0 then\n"
    "  redis.call('RPUSH', jk .. ':m', unpack(newly))\n"
    "  for _, w in ipairs(subb) do\n"
    "    local size = batch_of(w)\n"
    "    local part = 0\n"
    "    for s = 1, #newly, size do\n"
    "      part = part + 1\n"
    "      local e = math.min(s + size - 1, #newly)\n"
    "      redis.call('XADD', 'hq:q', '*',\n"
    "        'id', 'msg_' .. pol .. '_j' .. ARGV[1] .. '_' .. ARGV[3] .. '_' .. part .. '_' .. w,\n"
    "        'ev', 'package.batch', 'wh', w, 'pol', pol,\n"
    "        'u', table.concat(newly, ',', s, e), 'job', ARGV[1])\n"
    "      queued = queued + 1\n"
    "    end\n"
    "  end\n"
    "end\n"
    "redis.call('HSET', jk, 'cursor', ARGV[4], 'updated', ARGV[5])\n"
    "redis.call('HINCRBY', jk, 'matched', #newly)\n"
    "redis.call('HINCRBY', jk, 'skipped', pairs_n - #newly)\n"
    "redis.call('HINCRBY', jk, 'scanned', pairs_n)\n"
    "redis.call('HINCRBY', jk, 'queued', queued)\n"
    "return {'ok', #newly, queued}\n",

    /* JOB_END: ARGV job, state, now_ms. A job that is no longer running keeps its
     * state (a cancelled job is not later marked done). */
    "local jk = 'hq:job:' .. ARGV[1]\n"
    "local st = redis.call('HGET', jk, 'state')\n"
    "if not st then return {'missing'} end\n"
    "if st == 'running' then\n"
    "  redis.call('HSET', jk, 'state', ARGV[2], 'finished', ARGV[3], 'updated', ARGV[3])\n"
    "  redis.call('SREM', 'hq:jobs:running', ARGV[1])\n"
    "  redis.call('EXPIRE', jk .. ':m', 30 * 86400)\n"
    "  return {'ok', 1}\n"
    "end\n"
    "return {'ok', 0}\n",

    /* PUSH_ENT: ARGV uscc, ordinal, now_ms, n, then n (policy, mode, version)
     * triples, then the added and removed package policy ids (comma lists). */
    NOTIFY_LUA
    "local u, ord, now = ARGV[1], ARGV[2], ARGV[3]\n"
    "local n = tonumber(ARGV[4])\n"
    "local subm = redis.call('SMEMBERS', 'hq:whev:policy.matched')\n"
    "local subg = redis.call('SMEMBERS', 'hq:whev:policy.granted')\n"
    "local subb = redis.call('SMEMBERS', 'hq:whev:package.batch')\n"
    "local queued, newly = 0, 0\n"
    "for i = 0, n - 1 do\n"
    "  local pol = ARGV[5 + 3 * i]\n"
    "  local q = notify(pol, ARGV[6 + 3 * i], ARGV[7 + 3 * i], ord, u, '', now, subm, subg)\n"
    "  if q >= 0 then\n"
    "    newly = newly + 1\n"
    "    queued = queued + q\n"
    "    for _, w in ipairs(subb) do\n"
    "      redis.call('XADD', 'hq:q', '*', 'id', 'msg_' .. pol .. '_' .. u .. '_' .. w .. '_b',\n"
    "        'ev', 'package.batch', 'wh', w, 'pol', pol, 'u', u)\n"
    "      queued = queued + 1\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local added, removed = ARGV[5 + 3 * n], ARGV[6 + 3 * n]\n"
    "if added ~= '' or removed ~= '' then\n"
    /* Each change is its own event: a sequence number, not the clock, names it
     * (two changes within a millisecond must not share a webhook-id). */
    "  local pcn = redis.call('INCR', 'hq:pc:seq')\n"
    "  for _, w in ipairs(redis.call('SMEMBERS', 'hq:whev:enterprise.package_changed')) do\n"
    "    redis.call('XADD', 'hq:q', '*', 'id', 'msg_pc_' .. u .. '_' .. pcn .. '_' .. w,\n"
    "      'ev', 'enterprise.package_changed', 'wh', w, 'u', u, 'added', added,\n"
    "      'removed', removed)\n"
    "    queued = queued + 1\n"
    "  end\n"
    "end\n"
    "return {'ok', newly, queued}\n",

    /* Q_MOVE: ARGV now_ms, max. Due retries go back into the queue. */
    Q_REQUEUE_LUA
    "local ids = redis.call('ZRANGEBYSCORE', 'hq:retry', '-inf', ARGV[1], 'LIMIT', 0,\n"
    "  tonumber(ARGV[2]))\n"
    "for _, id in ipairs(ids) do requeue(id, false); redis.call('ZREM', 'hq:retry', id) end\n"
    "return {'ok', #ids}\n",

    /* Q_RECALL: ARGV id, due pairs. Deferred deliveries go back into the queue
     * now, each only while its retry is still the one due at that time (not
     * moved meanwhile, not a later attempt's retry with its own backoff). */
    Q_REQUEUE_LUA "local n = 0\n"
                  "for i = 1, #ARGV - 1, 2 do\n"
                  "  local sc = redis.call('ZSCORE', 'hq:retry', ARGV[i])\n"
                  "  if sc and tonumber(sc) == tonumber(ARGV[i + 1]) then\n"
                  "    requeue(ARGV[i], false)\n"
                  "    redis.call('ZREM', 'hq:retry', ARGV[i])\n"
                  "    n = n + 1\n"
                  "  end\n"
                  "end\n"
                  "return {'ok', n}\n",

    /* DLV_RECORD: ARGV id, stream id or '', outcome, now_ms, next due, attempts,
     * status, error, attempt JSON, job, webhook, body or '', nfields, fields. The
     * outcome is written before the entry is acknowledged, in one step. */
    "local id = ARGV[1]\n"
    "local k = 'hq:dlv:' .. id\n"
    "local now = ARGV[4]\n"
    "if redis.call('EXISTS', k) == 0 then\n"
    "  redis.call('HSET', k, 'created', now)\n"
    "  redis.call('ZADD', 'hq:dlvs', now, id)\n"
    "  if ARGV[11] ~= '' then redis.call('ZADD', 'hq:dlvs:wh:' .. ARGV[11], now, id) end\n"
    "  local nf = tonumber(ARGV[13])\n"
    "  for i = 0, nf - 1 do redis.call('HSET', k, ARGV[14 + 2 * i], ARGV[15 + 2 * i]) end\n"
    "end\n"
    "if ARGV[12] ~= '' then redis.call('HSET', k, 'body', ARGV[12]) end\n"
    "redis.call('HSET', k, 'state', ARGV[3], 'attempts', ARGV[6], 'last_status', ARGV[7],\n"
    "  'last_error', ARGV[8], 'last_at', now, 'next_at', ARGV[5])\n"
    "redis.call('RPUSH', k .. ':log', ARGV[9])\n"
    "redis.call('LTRIM', k .. ':log', -20, -1)\n"
    "if ARGV[3] == 'retry' then redis.call('ZADD', 'hq:retry', ARGV[5], id)\n"
    "else redis.call('ZREM', 'hq:retry', id) end\n"
    /* A job counts each delivery once, under its latest final outcome: a retry
     * or replay that changes the outcome moves the count ('counted' remembers
     * where it is). */
    "if ARGV[10] ~= '' then\n"
    "  local jk = 'hq:job:' .. ARGV[10]\n"
    "  local c = nil\n"
    "  if ARGV[3] == 'delivered' then c = 'delivered'\n"
    "  elseif ARGV[3] == 'dead' or ARGV[3] == 'disabled' then c = 'failed'\n"
    "  elseif ARGV[3] == 'expired' then c = 'expired' end\n"
    "  if c then\n"
    "    local prev = redis.call('HGET', k, 'counted')\n"
    "    if prev ~= c then\n"
    "      if prev then redis.call('HINCRBY', jk, prev, -1) end\n"
    "      redis.call('HINCRBY', jk, c, 1)\n"
    "      redis.call('HSET', k, 'counted', c)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "redis.call('EXPIRE', k, 14 * 86400)\n"
    "redis.call('EXPIRE', k .. ':log', 14 * 86400)\n"
    "if ARGV[2] ~= '' then\n"
    "  redis.call('XACK', 'hq:q', 'push', ARGV[2])\n"
    "  redis.call('XDEL', 'hq:q', ARGV[2])\n"
    "end\n"
    "return {'ok', 1}\n",

    /* DLV_REQUEUE: ARGV id. */
    Q_REQUEUE_LUA "if not requeue(ARGV[1], true) then return {'missing'} end\n"
                  "redis.call('ZREM', 'hq:retry', ARGV[1])\n"
                  "return {'ok', 1}\n",

    /* CFG_GET: ARGV name, value to set when absent. */
    "local v = redis.call('HGET', 'hq:cfg', ARGV[1])\n"
    "if not v then redis.call('HSET', 'hq:cfg', ARGV[1], ARGV[2]); v = ARGV[2] end\n"
    "return {'ok', v}\n",
};
