"""A server whose models return free text full of PII, for tests/sdk/test_label_privacy.py.

Run as ``python pii_app.py {fastapi|flask} PORT FILE``: modelotel exports metrics and spans (traces on) to
FILE; ``GET /flush`` exports now. Models, at ``GET /predict/{kind}``:

* ``summary``: a summarizer returning a str (an email and a card number in it): not a label;
* ``answer``: a QA model returning ``{"label": <an answer with a name and address>, "score": 0.9}``;
* ``batch``: a batch of free-text strings (a numpy str array);
* ``declared``: ``labels=["spam", "ham"]``, returning ``np.array(["spam"])``: a label;
* ``sentiment``: ``{"label": "POSITIVE", "score": 0.98}`` (a Hugging Face pipeline's shape): a label;
* ``sklearn``: ``instrument_model()(clf.predict)`` of a classifier fitted on string classes: a label;
* ``opted``: ``free_text_labels=True``, returning a 5 MB text with an email and a card: scrubbed and capped;
* ``callable``: ``label=`` callable returning the free text: not a label.

``GET /users/{token}/orders`` and ``GET /fail/{what}`` put PII in ``url.path`` and in an exception message.
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.linear_model import LogisticRegression

import modelotel

FRAMEWORK, PORT, OUT = sys.argv[1], int(sys.argv[2]), sys.argv[3]
modelotel.configure(service_name="pii-app", exporter="file", path=OUT, export_interval=3600, traces="span")

SUMMARY = "Jane Roe (jane.roe@example.com) paid with 4111 1111 1111 1111 on 2024-05-01."
ANSWER = "Johnathan Q. Smithers, 1428 Elm Street, Springfield"
OPTED = "contact zed@example.org card 5555555555554444 " + "z" * (5 << 20)


@modelotel.instrument_model(name="summary", version="1")
def summary(x):
    return SUMMARY


@modelotel.instrument_model(name="answer", version="1")
def answer(x):
    return {"label": ANSWER, "score": 0.9}


@modelotel.instrument_model(name="batch", version="1")
def batch(x):
    return np.array([SUMMARY, ANSWER])


@modelotel.instrument_model(name="declared", version="1", labels=["spam", "ham"])
def declared(x):
    return np.array(["spam"])


@modelotel.instrument_model(name="sentiment", version="1")
def sentiment(x):
    return {"label": "POSITIVE", "score": 0.98}


_clf = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), np.array(["cat", "cat", "dog", "dog"]))
sklearn_predict = modelotel.instrument_model(name="sklearn", version="1")(_clf.predict)


@modelotel.instrument_model(name="opted", version="1", free_text_labels=True)
def opted(x):
    return OPTED


@modelotel.instrument_model(name="callable", version="1", label=lambda out: out["text"])
def with_callable(x):
    return {"text": ANSWER, "probabilities": [0.1, 0.9]}


MODELS = {
    "summary": lambda: summary([1.0]),
    "answer": lambda: answer([1.0]),
    "batch": lambda: batch([1.0]),
    "declared": lambda: declared([1.0]),
    "sentiment": lambda: sentiment([1.0]),
    "sklearn": lambda: sklearn_predict(np.array([[2.5]])),
    "opted": lambda: opted([1.0]),
    "callable": lambda: with_callable([1.0]),
}


class Refused(Exception):
    pass


def fail(what: str) -> None:
    raise Refused(f"refused {what} for card_4111111111111111, ssn 123456789, Bearer sk-proj-a1B2c3D4e5F6g7H8i9J0")


def predict(kind: str) -> dict:
    MODELS[kind]()
    return {"ok": kind}


def fastapi_app():
    from fastapi import FastAPI

    from modelotel.integrations.fastapi import instrument_app

    app = FastAPI()
    app.get("/predict/{kind}")(predict)

    @app.get("/users/{token}/orders")
    def orders(token: str):
        return {"n": len(token)}

    @app.get("/fail/{what}")
    def failing(what: str):
        fail(what)

    @app.get("/flush")
    def flush():
        return {"flushed": modelotel.force_flush()}

    return instrument_app(app)


def flask_app():
    from flask import Flask

    from modelotel.integrations.flask import instrument_app

    app = Flask(__name__)
    app.get("/predict/<kind>")(predict)

    @app.get("/users/<token>/orders")
    def orders(token):
        return {"n": len(token)}

    @app.get("/fail/<what>")
    def failing(what):
        fail(what)

    @app.get("/flush")
    def flush():
        return {"flushed": modelotel.force_flush()}

    return instrument_app(app)


if __name__ == "__main__":
    if FRAMEWORK == "fastapi":
        import uvicorn

        uvicorn.run(fastapi_app(), host="127.0.0.1", port=PORT, log_level="warning")
    else:
        from werkzeug.serving import make_server

        make_server("127.0.0.1", PORT, flask_app(), threaded=True).serve_forever()
