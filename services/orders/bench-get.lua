-- wrk script: GET /orders/{id} for random ids from the file named by $ORDERS_IDS.
local ids = {}
for line in io.lines(os.getenv("ORDERS_IDS")) do ids[#ids + 1] = line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/orders/" .. ids[math.random(#ids)])
end
