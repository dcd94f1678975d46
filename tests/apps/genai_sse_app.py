"""A FastAPI app streaming a model's tokens as server-sent events, for tests/e2e/test_genai_sse.py.

    uvicorn tests.apps.genai_sse_app:app

The model is an async generator instrumented with ``genai=``: its prefill (time to the first token) and decode
step (time between tokens) are given per request, so the test knows what each stream should take. modelotel
configures itself from the environment (MODELOTEL_EXPORT_FILE, ...) on the first call; ``POST /flush`` exports
now, so each request's points can be read on their own (delta temporality).
"""

import asyncio
import json

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

import modelotel
from modelotel import GenAI

app = FastAPI()


@modelotel.instrument_model("tiny-llm", "v1", genai=GenAI(provider="modelotel.test", operation="text_completion"))
async def generate(prompt: str, prefill_s: float, step_s: float, tokens: int):
    await asyncio.sleep(prefill_s)
    for i in range(tokens):
        if i:
            await asyncio.sleep(step_s)
        yield f"{prompt}-{i}"


@app.post("/v1/completions")
async def completions(body: dict) -> StreamingResponse:
    async def events():
        async for token in generate(body["prompt"], body["prefill_s"], body["step_s"], body["tokens"]):
            yield f"data: {json.dumps({'token': token})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@app.post("/flush")
def flush() -> dict:
    return {"flushed": modelotel.force_flush()}
