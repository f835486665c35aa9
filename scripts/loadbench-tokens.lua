-- wrk script for the signed routes: every request carries the next token of the file given as
-- the script's argument (one JWS per line), so no token is sent twice. Past the end it starts
-- again: those are replays, refused (401), and a non-2xx fails the benchmark run, so a file
-- too short for the run shows instead of being measured.
local tokens, n, i = {}, 0, 0

function init(args)
  for line in io.lines(args[1]) do
    n = n + 1
    tokens[n] = "Bearer " .. line
  end
end

function request()
  i = i + 1
  if i > n then i = 1 end
  return wrk.format(nil, nil, { ["Authorization"] = tokens[i] })
end
