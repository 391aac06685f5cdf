-- wrk script for benches/http/run.sh. One script for every HTTP workload, chosen by variables:
--   MODE    get | put | scan | etcd-get | etcd-put | etcd-range
--   PREFIX  path prefix of the Jessy API: /v1 (jessy-core, the baseline) or /api/v1 (gateway)
--   KEYS    how many keys were preloaded: k000000 .. k(KEYS-1), zero-padded to 6 digits
-- Keys are drawn uniformly at random in every request. done() prints one machine-readable line:
--   RESULT requests=N seconds=S rps=R p50_ms=A p99_ms=B non2xx=C errors=D

local mode = os.getenv("MODE") or "get"
local prefix = os.getenv("PREFIX") or "/v1"
local keys = tonumber(os.getenv("KEYS") or "100000")
local value = string.rep("v", 150)

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(s)
  return ((s:gsub(".", function(c)
    local r, b = "", c:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#s % 3 + 1])
end

local value64 = b64(value)
local json = { ["Content-Type"] = "application/json" }
local octets = { ["Content-Type"] = "application/octet-stream" }

local threads = {}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

local function key()
  return string.format("k%06d", math.random(0, keys - 1))
end

-- k0123 matches exactly the 100 keys k012300 .. k012399.
local function scan_prefix()
  return string.format("k%04d", math.random(0, keys / 100 - 1))
end

-- Jessy's requests are a template formatted once, with each request's key spliced in: calling
-- wrk.format for every request cost the load generator about 2.5 µs of CPU per PUT on a 2-core
-- machine (the splice: 0.5), time taken from the server it shares the cores with. (etcd's
-- requests are still formatted each time; at its rate the difference is lost in the noise.)
local MARK = "@KEY@"
local head, tail, draw

local function template(method, path, headers, body)
  local req = wrk.format(method, path, headers, body)
  local i, j = req:find(MARK, 1, true)
  return req:sub(1, i - 1), req:sub(j + 1)
end

function init(args)
  math.randomseed(os.time() * 1000 + (id or 0) * 7919)
  if mode == "get" then
    head, tail = template("GET", prefix .. "/dimensions/default/keys/" .. MARK)
    draw = key
  elseif mode == "put" then
    head, tail = template("PUT", prefix .. "/dimensions/default/keys/" .. MARK, octets, value)
    draw = key
  elseif mode == "scan" then
    head, tail = template("GET", prefix .. "/dimensions/default/scan?prefix=" .. MARK .. "&limit=100")
    draw = scan_prefix
  end
end

function request()
  if head then
    return head .. draw() .. tail
  elseif mode == "etcd-get" then
    return wrk.format("POST", "/v3/kv/range", json, '{"key":"' .. b64(key()) .. '"}')
  elseif mode == "etcd-put" then
    return wrk.format("POST", "/v3/kv/put", json, '{"key":"' .. b64(key()) .. '","value":"' .. value64 .. '"}')
  elseif mode == "etcd-range" then
    local n = math.random(0, keys / 100 - 1)
    local from, to = string.format("k%04d", n), string.format("k%04d", n + 1)
    return wrk.format("POST", "/v3/kv/range", json,
      '{"key":"' .. b64(from) .. '","range_end":"' .. b64(to) .. '","limit":100}')
  end
  error("unknown MODE " .. mode)
end

function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format("RESULT requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d errors=%d\n",
    summary.requests, seconds, summary.requests / seconds, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end
