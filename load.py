import asyncio, sys, time, httpx, json
h2 = sys.argv[1] == "h2"
def body(i):
    return json.dumps({"jsonrpc": "2.0", "id": i, "method": "message/send", "params": {"message": {
        "role": "user", "messageId": f"b-{i}", "kind": "message", "parts": [{"kind": "text", "text": f"hello {i}"}]}}}).encode()
async def main():
    async with httpx.AsyncClient(http1=not h2, http2=h2, timeout=30) as c:
        end = time.time() + float(sys.argv[2]); n = 0
        while time.time() < end:
            r = await c.post("http://127.0.0.1:8931/", content=body(n), headers={"content-type": "application/json"}); n += 1
        print(n / float(sys.argv[2]), "rps")
asyncio.run(main())
