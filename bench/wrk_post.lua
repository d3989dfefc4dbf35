-- wrk script for make bench's POST row: every request is a POST of the same JSON
-- body (the file named by WRK_BODY_FILE) with the bearer key in HUIQI_KEY.
local f = assert(io.open(os.getenv("WRK_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("HUIQI_KEY") or "")
