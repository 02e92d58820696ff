"""MiDashengLM (Xiaomi): a Dasheng audio encoder feeding Qwen2.5-Omni's language model.

transformers has no class for it: the checkpoint carries its own code (named by `auto_map` in
config.json), so it loads with trust_remote_code, and only from a checkpoint whose code is
actually there.
"""

import os

from workers.method.perception.alm.base import AudioLanguageModel


def _require_code(path: str, config: dict) -> None:
    auto_map = config.get("auto_map") or {}
    if not auto_map:
        raise ValueError(
            "MiDashengLM has no class in transformers and runs on code shipped with the checkpoint, "
            "but this config.json has no auto_map naming that code; use the complete checkpoint"
        )
    if not os.path.isdir(path):
        return  # a hub id: the code comes down with the rest of the snapshot
    refs = [ref for value in auto_map.values() for ref in (value if isinstance(value, list) else [value]) if ref]
    elsewhere = [ref for ref in refs if "--" in ref]  # "repo--module.Class": code in another repository
    if elsewhere:
        raise FileNotFoundError(
            f"MiDashengLM's auto_map points to code in another repository ({', '.join(elsewhere)}); "
            f"copy that code into {path} and name it there"
        )
    files = sorted({ref.rsplit(".", 1)[0] + ".py" for ref in refs})  # "module.Class" is <path>/module.py
    missing = [f for f in files if not os.path.isfile(os.path.join(path, f))]
    if missing:
        raise FileNotFoundError(
            f"MiDashengLM runs on code shipped with the checkpoint, and {path} lacks {', '.join(missing)}; "
            "copy the complete checkpoint, .py files included"
        )


class MiDashengLMModel(AudioLanguageModel):
    family = "midashenglm"
    audio_before_text = False  # as in the model card's examples

    @classmethod
    def _load_processor(cls, path, config):
        _require_code(path, config)
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(path, trust_remote_code=True)

    @classmethod
    def _load_model(cls, path, config, dtype):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=True)
