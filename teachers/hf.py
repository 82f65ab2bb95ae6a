"""Hugging Face teachers: `hf:NAME_OR_DIR` opens a transformers segmentation or depth model as a teacher.

Sits beside external.py under base.load_teacher (which dispatches `hf:` specs here) and needs the optional
`transformers` package (`pip install 'mtdistill[hf]'`). The wrappers below take RGB in 0..255 (the
Teacher passes it through unnormalised: RAW_RGB) and let the model's own image processor resize and
normalise; their outputs come back at the input size:

    segm:  AutoModelForSemanticSegmentation (SegFormer, UperNet, BEiT, DPT, MobileViT): logits upsampled;
           AutoModelForUniversalSegmentation (Mask2Former, OneFormer): the semantic post-processing's
           class-weighted mask sum, normalised per pixel, as log-probabilities (the Teacher's softmax of
           them gives those probabilities back).
    depth: AutoModelForDepthEstimation (DPT, GLPN, Depth Anything / V2, ZoeDepth) through the processor's
           post_process_depth_estimation. Metric models give metres; relative ones give inverse depth
           up to an affine map, turned into metres by a fit (`?scale=A&shift=B`: metres = 1 / (A d + B))
           that the label job estimates from the store's real depth before labeling.

Spec: `hf:NAME_OR_DIR[?depth=metric|relative][&scale=A&shift=B]`: a local folder written by
save_pretrained, or a Hub model id (from the Hub cache, or downloaded). `depth=` overrides what the
model's config says. Security: custom model code is never run (trust_remote_code stays off), and
PyTorch `.bin` weights (pickles) are first read weights-only, so a pickle that would run code is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from stores.depthfit import DepthFit
from stores.errors import UserError
from stores.files import read_weights, sha256_file
from teachers.external import first_line

PREFIX = "hf:"
RAW_RGB = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "range": 255.0, "bgr": False}
DEPTH_KINDS = ("metric", "relative")
METRIC_TYPES = ("glpn", "zoedepth")            # model types whose depth is metric when the config does not say
OPTIONS = ("depth", "scale", "shift")
WEIGHT_FILES = ("*.safetensors", "*.bin")
RECORDED_FILES = ("config.json", "preprocessor_config.json")


def is_hf_spec(spec) -> bool:
    """True when `spec` is a string starting with `hf:`."""
    return isinstance(spec, str) and spec.startswith(PREFIX)


def parse_hf_spec(spec: str) -> tuple[str, dict]:
    """`hf:SOURCE?k=v&...` -> (SOURCE, {"depth": str, "scale": float, "shift": float}, the keys given).
    UserError naming the spec for an empty source, an unknown key, a depth kind other than metric or
    relative, or a scale/shift that is not a finite number."""
    source, _, query = spec[len(PREFIX):].partition("?")
    source = os.path.expanduser(source)                  # hf:~/models/x: the shell leaves a ~ after hf: as is
    if not source:
        raise UserError(f"{spec!r}: give a model after hf:, e.g. hf:nvidia/segformer-b0-finetuned-ade-512-512")
    options = {}
    for item in filter(None, query.split("&")):
        key, sep, value = item.partition("=")
        if not sep or key not in OPTIONS:
            raise UserError(f"{spec!r}: unknown option {item!r}; options: {', '.join(OPTIONS)}")
        if key == "depth" and value not in DEPTH_KINDS:
            raise UserError(f"{spec!r}: depth={value!r}: choose one of {list(DEPTH_KINDS)}")
        if key != "depth":
            try:
                value = float(value)
            except ValueError:
                value = float("nan")
            if not torch.isfinite(torch.tensor(value)):
                raise UserError(f"{spec!r}: {key}={item.partition('=')[2]!r} is not a finite number")
        options[key] = value
    return source, options


def check_local(spec: str, source: str) -> None:
    """UserError naming the spec when `source` is written as a local path (starts with / or ., or has more
    than one /: a Hub model is NAME or ORG/NAME; parse_hf_spec expanded a leading ~) and no such folder
    exists."""
    local = source.startswith(("/", ".")) or source.count("/") > 1
    if local and not Path(source).is_dir():
        what = "is a file, not a model folder" if Path(source).exists() else "no such folder"
        raise UserError(f"{spec}: {what} ({source!r}; a saved model is a folder with config.json, "
                        f"a Hub model is named NAME or ORG/NAME)")


def hf_spec(source: str, options: dict) -> str:
    """The inverse of parse_hf_spec: (SOURCE, options) -> `hf:SOURCE?k=v&...` (floats written exactly)."""
    query = "&".join(f"{k}={repr(float(v)) if k != 'depth' else v}" for k, v in options.items()
                     if k in OPTIONS and v is not None)
    return PREFIX + source + (f"?{query}" if query else "")


def absolute_spec(spec: str) -> str:
    """`hf:DIR...` with DIR made absolute when it is a local folder (labeling workers may run elsewhere)."""
    source, options = parse_hf_spec(spec)
    return hf_spec(str(Path(source).resolve()), options) if Path(source).is_dir() else spec


def _transformers():
    try:
        import transformers
    except ImportError:
        raise UserError("hf: teachers need the transformers package: pip install 'mtdistill[hf]'") from None
    transformers.utils.logging.set_verbosity_error()          # no per-load progress bars or notices
    transformers.utils.logging.disable_progress_bar()
    return transformers


def model_files(source: str, config) -> tuple[Path | None, str | None]:
    """(folder holding the model's files, Hub commit hash or None): the folder itself for a local model,
    the Hub cache's snapshot folder for a Hub id."""
    if Path(source).is_dir():
        return Path(source), None
    from huggingface_hub import try_to_load_from_cache

    commit = getattr(config, "_commit_hash", None)
    found = try_to_load_from_cache(source, "config.json", revision=commit)
    return (Path(found).parent if isinstance(found, str) else None), commit


def check_pickles(folder: Path | None) -> None:
    """Read every PyTorch `.bin` weights file weights-only first: a pickle naming Python objects (code it
    would run) is refused with a UserError naming the file and the objects (stores.files.read_weights)."""
    for path in sorted(folder.glob("*.bin")) if folder else ():
        read_weights(path, "Hugging Face weights file")


def files_hash(folder: Path | None) -> dict:
    """{file name: sha256} of the config, the processor config and every weights file in `folder`."""
    if folder is None:
        return {}
    names = [p for pattern in WEIGHT_FILES for p in folder.glob(pattern)]
    names += [folder / n for n in RECORDED_FILES if (folder / n).is_file()]
    return {p.name: sha256_file(p) for p in sorted(set(names))}


def depth_kind(config, options: dict, spec: str) -> str:
    """"metric" or "relative": `?depth=` if given, else config.depth_estimation_type, else metric for GLPN
    and ZoeDepth, relative for DPT; UserError asking for `?depth=` when the config does not tell."""
    if "depth" in options:
        return options["depth"]
    kind = getattr(config, "depth_estimation_type", None)
    if kind in DEPTH_KINDS:
        return kind
    if config.model_type in METRIC_TYPES:
        return "metric"
    if config.model_type == "dpt":
        return "relative"
    raise UserError(f"{spec}: cannot tell whether {config.model_type} predicts metric or relative depth; "
                    f"add ?depth=metric or ?depth=relative to the spec")


def open_hf(spec: str, task: str, device="cpu") -> tuple[nn.Module, dict]:
    """`hf:...` -> (wrapper module on `device`, metadata {"name", "version", "norm", "classes", "hf"}) for
    base.load_teacher. UserError naming the spec when transformers is missing, the model cannot be read,
    is not a `task` model, needs its own code, or its weights are a pickle that would run code."""
    source, options = parse_hf_spec(spec)
    check_local(spec, source)
    tf = _transformers()
    where = f"{spec}"
    try:
        config = tf.AutoConfig.from_pretrained(source, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - OSError, ValueError, HTTP errors: one line naming the spec
        raise UserError(f"{where}: cannot read a Hugging Face model config ({first_line(e)})") from None
    folder, commit = model_files(source, config)
    check_pickles(folder)
    try:
        processor = tf.AutoImageProcessor.from_pretrained(source)
        model = load_model(tf, source, task, config, where)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001
        raise UserError(f"{where}: cannot load the Hugging Face model ({first_line(e)})") from None
    files = files_hash(folder)
    version = hashlib.sha256(json.dumps({"files": files, "options": options, "source": source if not files else
                                         None}, sort_keys=True).encode()).hexdigest()
    if not files:                                # nothing on disk to hash: hash the weights in memory
        from teachers.external import state_dict_hash
        version = hashlib.sha256((version + state_dict_hash(model)).encode()).hexdigest()
    hf = {"model": source, "model_type": config.model_type, "revision": commit, "files": files}
    if task == "segm":
        wrapper, classes = HFSegmenter(model, processor), [config.id2label[i] for i in range(len(config.id2label))]
    else:
        kind = depth_kind(config, options, where)
        fit = DepthFit("inverse", options["scale"], options.get("shift", 0.0), 0.0, 0) if "scale" in options else None
        wrapper, classes = HFDepth(model, processor, kind, fit), None
        hf.update(depth=kind, fit=None if fit is None else {"scale": fit.scale, "shift": fit.shift})
    name = Path(source).name if Path(source).is_dir() else source.replace("/", "--")
    meta = {"name": name, "version": version, "norm": RAW_RGB, "classes": classes, "hf": hf}
    return wrapper.to(device).eval(), meta


def load_model(tf, source: str, task: str, config, where: str) -> nn.Module:
    """The transformers model of `task`: semantic, else universal segmentation; depth estimation.
    UserError naming the model type when it is neither."""
    autos = ([tf.AutoModelForSemanticSegmentation, tf.AutoModelForUniversalSegmentation] if task == "segm"
             else [tf.AutoModelForDepthEstimation])
    for auto in autos:
        if type(config) in auto._model_mapping:
            return auto.from_pretrained(source, trust_remote_code=False)
    what = "semantic or universal segmentation" if task == "segm" else "depth estimation"
    raise UserError(f"{where}: {config.model_type} is not a {what} model, so it gives no {task}")


def to_images(x: torch.Tensor) -> list:
    """(B, 3, H, W) float RGB 0..255 -> list of B uint8 (H, W, 3) numpy images for an image processor."""
    return list(x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())


def valid_region(y: torch.Tensor, inputs) -> torch.Tensor:
    """Crop output maps y (B, C, h, w) to the part that covers the image when the processor padded it
    (its pixel_mask (B, H', W') marks the image)."""
    mask = inputs.get("pixel_mask") if hasattr(inputs, "get") else None
    if mask is None:
        return y
    rows, cols = int(mask[0].any(1).sum()), int(mask[0].any(0).sum())
    h, w = y.shape[-2:]
    return y[..., : max(1, round(h * rows / mask.shape[1])), : max(1, round(w * cols / mask.shape[2]))]


class HFSegmenter(nn.Module):
    """forward(x (B, 3, H, W) RGB 0..255) -> {"segm": (B, C, H, W)} logits (semantic models) or
    log-probabilities (universal models), C = len(config.id2label)."""

    input_multiple = 1

    def __init__(self, model: nn.Module, processor):
        super().__init__()
        self.model, self.processor = model, processor
        self.oneformer = model.config.model_type == "oneformer"

    def forward(self, x: torch.Tensor) -> dict:
        """See the class docstring."""
        b, _, h, w = x.shape
        extra = {"task_inputs": ["semantic"] * b} if self.oneformer else {}
        inputs = self.processor(images=to_images(x), return_tensors="pt", **extra).to(x.device)
        out = self.model(**inputs)
        semantic = getattr(out, "logits", None) is not None
        y = out.logits if semantic else out.masks_queries_logits               # (B, C or Q, h', w')
        y = F.interpolate(valid_region(y, inputs), size=(h, w), mode="bilinear", align_corners=False)
        if not semantic:                                                       # as the semantic post-processing
            classes = out.class_queries_logits.softmax(-1)[..., :-1]           # (B, Q, C): no "null" class
            y = torch.einsum("bqc,bqhw->bchw", classes, y.sigmoid())           # (B, C, H, W)
            y = (y / y.sum(1, keepdim=True).clamp_min(1e-12)).clamp_min(1e-12).log()
        return {"segm": y}


class HFDepth(nn.Module):
    """forward(x (B, 3, H, W) RGB 0..255) -> {"depth": (B, 1, H, W)}: metres for metric models and for
    relative ones with a fit (stores.depthfit "inverse": metres = 1 / (scale d + shift), 0 where that is not
    positive). A relative model without a fit raises UserError unless `raw` is set; with `raw` set it gives
    its relative inverse depth d, fit or not (what the label job's anchoring fits)."""

    input_multiple = 1

    def __init__(self, model: nn.Module, processor, kind: str, fit: DepthFit | None = None):
        super().__init__()
        self.model, self.processor, self.kind, self.fit = model, processor, kind, fit
        self.raw = False

    @property
    def needs_fit(self) -> bool:
        """True for a relative-depth model that has no fit yet."""
        return self.kind == "relative" and self.fit is None

    def forward(self, x: torch.Tensor) -> dict:
        """See the class docstring."""
        if self.needs_fit and not self.raw:
            raise UserError("a relative-depth model gives metres only once anchored to real depth "
                            "(mtdistill label does that), or add ?depth=metric to its spec")
        b, _, h, w = x.shape
        inputs = self.processor(images=to_images(x), return_tensors="pt").to(x.device)
        out = self.model(**inputs)
        if getattr(out, "predicted_depth", None) is None:
            raise UserError(f"{self.model.config.model_type}: the model gives no depth (outputs: {list(out.keys())})")
        sizes = [(h, w)] * b
        post = self.processor.post_process_depth_estimation
        extra = {"source_sizes": sizes} if "source_sizes" in post.__code__.co_varnames else {}
        d = torch.stack([r["predicted_depth"] for r in post(out, target_sizes=sizes, **extra)])[:, None]
        d = d.float()                                                        # (B, 1, H, W)
        if self.kind == "relative" and self.fit is not None and not self.raw:
            d = torch.from_numpy(self.fit.apply(d.cpu().numpy())).to(x.device)
        return {"depth": d}
