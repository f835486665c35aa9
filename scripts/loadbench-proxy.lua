-- wrk script for the signer benchmark: every request is absolute-form to the target given as the
-- script's argument (`GET http://127.0.0.1:PORT/ HTTP/1.1`), as a client that uses the signer
-- as its HTTP_PROXY sends it; wrk itself connects to the signer.
local req

function init(args)
  -- Host names the target, as a proxy client sends it (wrk would put the signer's address).
  local host = string.match(args[1], "^http://([^/]+)")
  req = wrk.format("GET", args[1], { Host = host })
end

function request()
  return req
end
