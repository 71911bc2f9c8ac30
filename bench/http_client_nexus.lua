-- bench/http_client_nexus.lua: nexus.http's client in the HTTP client
-- benchmark (bench/http_client.sh): INFLIGHT tasks, each issuing GETs one
-- after the other; libcurl keeps the connections alive between them.
--   nexus bench/http_client_nexus.lua URL [N [INFLIGHT [WARMUP]]]
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local nexus = require "nexus"
local c = dofile(dir .. "http_count.lua").new({ ... })
local get = nexus.http.get

nexus.run(function()
  local function worker()
    while c.take() do
      local res, err = get(c.url)
      if res then c.done(res.status, res.body) else c.done(nil, err) end
    end
  end
  for _ = 1, c.inflight do nexus.spawn(worker) end
end)
c.report()
