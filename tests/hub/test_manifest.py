"""Manifest schema validation (modelzoo.hub.manifest) and semantic versions (modelzoo.versions)."""

from __future__ import annotations

import copy
import json

import pytest

from modelzoo.errors import ManifestError, ModelZooError
from modelzoo.hub.manifest import Hash, load_manifest, parse_hash, parse_manifest
from modelzoo.versions import best_match, is_version, matches, parse_version, split_spec

SOURCE = "registry/models/demo/1.0.0/manifest.json"


def _valid() -> dict:
    return {
        "schema_version": 1,
        "name": "demo",
        "version": "1.0.0",
        "family": "Demo",
        "summary": "a demo model",
        "task": "image-classification",
        "license": "Apache-2.0",
        "tags": ["demo", "mobile"],
        "paper": "https://arxiv.org/abs/1704.04861",
        "homepage": "https://example.org/",
        "input": {"shape": [32, 32, 3], "min_size": 32, "dtype": "float32", "preprocessing": "tf"},
        "labels": "imagenet",
        "build": {
            "kind": "keras-application",
            "constructor": "MobileNet",
            "kwargs": {"alpha": 0.25},
        },
        "artifacts": {
            "full": {
                "url": "https://example.org/w/full.h5",
                "mirrors": ["https://mirror.example.org/w/full.h5"],
                "hash": "md5:" + "a" * 32,
                "size": 1234,
                "format": "h5-weights",
                "file_name": "full.h5",
            },
            "notop": {
                "url": "weights/notop.h5",
                "hash": "sha256:" + "b" * 64,
                "format": "h5-weights",
            },
        },
        "cut_points": [
            {"layer": "conv_pw_13_relu", "shape": [1, 1, 256], "variant": "notop", "note": "last"}
        ],
        "notes": None,
    }


def _set(doc: dict, path: str, value) -> None:
    """Set (or with value=KeyError, delete) a dotted path like 'artifacts.full.hash'."""
    keys = path.split(".")
    target = doc
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    last = keys[-1]
    if value is KeyError:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value


def test_valid_manifest_parses_into_value_objects():
    m = parse_manifest(_valid(), source=SOURCE)
    assert m.spec == "demo@1.0.0"
    assert m.input.shape == (32, 32, 3) and m.input.preprocessing == "tf"
    assert m.build.constructor == "MobileNet" and m.build.kwargs == {"alpha": 0.25}
    full = m.artifact("full")
    assert full.hash == Hash("md5", "a" * 32) and str(full.hash) == "md5:" + "a" * 32
    assert full.urls == ("https://example.org/w/full.h5", "https://mirror.example.org/w/full.h5")
    notop = m.artifact("notop")
    assert notop.file_name == "notop.h5"  # defaults to the URL's last segment
    assert notop.size is None and notop.mirrors == ()
    assert m.cut_points[0].layer == "conv_pw_13_relu" and m.cut_points[0].shape == (1, 1, 256)
    assert m.to_dict() == _valid()
    assert m.source == SOURCE


@pytest.mark.parametrize(
    "url",
    [
        "weights.h5",
        "./weights.h5",
        "sub/dir/weights.h5",
        "weights.h5?download=1",
        "http://example.org/w.h5",
        "file:///srv/models/w.h5",
    ],
)
def test_accepted_artifact_urls(url):
    doc = _valid()
    doc["artifacts"]["full"]["url"] = url
    doc["artifacts"]["full"]["file_name"] = "w.h5"
    assert parse_manifest(doc).artifact("full").url == url


# (dotted path to change, new value or KeyError to delete, expected field, message fragment)
INVALID = [
    ("name", KeyError, "name", "is required"),
    ("artifacts", KeyError, "artifacts", "is required"),
    ("input", KeyError, "input", "is required"),
    ("name", "../x", "name", "invalid model name"),
    ("name", "Demo", "name", "invalid model name"),
    ("name", "a/b", "name", "invalid model name"),
    ("version", "1.0", "version", "semantic version"),
    ("version", 1, "version", "expected a string"),
    ("schema_version", 2, "schema_version", "upgrade modelzoo"),
    ("schema_version", True, "schema_version", "reads schema_version 1"),
    ("schema_version", "1", "schema_version", "reads schema_version 1"),
    ("schema_version", 1.0, "schema_version", "reads schema_version 1"),
    ("extra", "x", "extra", "unknown field"),
    ("artifacts.full.hash", "md5:xyz", "artifacts.full.hash", "md5:<32 hex>"),
    ("artifacts.full.hash", "md5:" + "g" * 32, "artifacts.full.hash", "32 hex"),
    ("artifacts.full.hash", "sha1:" + "a" * 40, "artifacts.full.hash", "sha256"),
    ("artifacts.full.hash", "a" * 32, "artifacts.full.hash", "md5:<32 hex>"),
    ("artifacts.full.url", "ftp://example.org/w.h5", "artifacts.full.url", "scheme 'ftp'"),
    ("artifacts.full.url", "../../etc/passwd", "artifacts.full.url", "stay inside"),
    ("artifacts.full.url", "a/../../w.h5", "artifacts.full.url", "stay inside"),
    ("artifacts.full.url", "/etc/passwd", "artifacts.full.url", "stay inside"),
    ("artifacts.full.url", "%2e%2e/w.h5", "artifacts.full.url", "stay inside"),
    ("artifacts.full.url", "..\\w.h5", "artifacts.full.url", "stay inside"),
    ("artifacts.full.url", "//evil.example.org/w.h5", "artifacts.full.url", "stay inside"),
    ("artifacts.full.url", "file:/etc/passwd", "artifacts.full.url", "file://"),
    ("artifacts.full.url", "https:///w.h5", "artifacts.full.url", "no host"),
    ("artifacts.full.url", "", "artifacts.full.url", "non-empty"),
    ("artifacts.full.mirrors", ["ftp://x/w.h5"], "artifacts.full.mirrors[0]", "scheme"),
    ("artifacts.full.mirrors", "https://x/w.h5", "artifacts.full.mirrors", "expected a list"),
    ("artifacts.full.size", True, "artifacts.full.size", "expected an integer, got True"),
    ("artifacts.full.size", -1, "artifacts.full.size", ">= 0"),
    ("artifacts.full.size", 1.5, "artifacts.full.size", "expected an integer"),
    ("artifacts.full.color", "red", "artifacts.full", "unknown keys ['color']"),
    ("artifacts.full.format", "pickle", "artifacts.full.format", "expected one of"),
    ("artifacts.full.format", "h5", "artifacts.full.format", "must be 'h5-weights'"),
    ("artifacts.full.file_name", "../x.h5", "artifacts.full.file_name", "unsafe file name"),
    ("artifacts.full.file_name", "a/b.h5", "artifacts.full.file_name", "unsafe file name"),
    ("artifacts", {}, "artifacts", "at least one"),
    ("artifacts.full.signature", "full.h5.sig", "artifacts.full.signature", "expected an object"),
    ("artifacts.full.signature", {"url": "s.sig"}, "artifacts.full.signature.hash", "sha256:<64"),
    (
        "artifacts.full.signature",
        {"url": "s.sig", "hash": "md5:" + "a" * 32},
        "artifacts.full.signature.hash",
        "expected 'sha256:<64 hex>'",
    ),
    (
        "artifacts.full.signature",
        {"url": "../s.sig", "hash": "sha256:" + "a" * 64},
        "artifacts.full.signature.url",
        "stay inside",
    ),
    (
        "artifacts.full.signature",
        {"url": "https://u:p@example.org/s.sig", "hash": "sha256:" + "a" * 64},
        "artifacts.full.signature.url",
        "credentials",
    ),
    (
        "artifacts.full.signature",
        {"url": "s.sig", "hash": "sha256:" + "a" * 64, "key": "x"},
        "artifacts.full.signature",
        "unknown keys ['key']",
    ),
    ("input.shape", [True, 32, 3], "input.shape", "positive integers"),
    ("input.shape", [0, 32, 3], "input.shape", "positive integers"),
    ("input.shape", [], "input.shape", "non-empty list"),
    ("input.min_size", True, "input.min_size", "expected an integer, got True"),
    ("input.min_size", 0, "input.min_size", "positive"),
    ("input.preprocessing", "magic", "input.preprocessing", "expected one of"),
    ("input.mean", [1, 2, 3], "input", "unknown keys ['mean']"),
    ("build.kind", "pickle", "build.kind", "expected one of"),
    ("build.constructor", KeyError, "build.constructor", "required for keras-application"),
    ("build.constructor", "os.system", "build.constructor", "bare constructor name"),
    ("build.kwargs", {"weights": "imagenet"}, "build.kwargs.weights", "chosen by modelzoo"),
    ("build.kwargs", {"include_top": True}, "build.kwargs.include_top", "chosen by modelzoo"),
    ("build.module", "x", "build", "unknown keys ['module']"),
    ("cut_points", [{"shape": [1]}], "cut_points[0].layer", "is required"),
    ("cut_points.0.variant", "mid", "cut_points[0].variant", "no artifact 'mid'"),
    ("cut_points.0.where", "x", "cut_points[0]", "unknown keys ['where']"),
    ("cut_points.0.shape", [1, -1, 3], "cut_points[0].shape", "positive integers"),
    ("cut_points", ["conv"], "cut_points[0]", "expected an object"),
    ("tags", ["ok", 3], "tags", "list of strings"),
    ("tags", "mobile", "tags", "expected a list"),
    ("labels", 1000, "labels", "'imagenet', a list of class names, or null"),
    ("summary", ["x"], "summary", "expected a string"),
    ("notes", 5, "notes", "expected a string"),
]


@pytest.mark.parametrize(("path", "value", "field", "fragment"), INVALID, ids=lambda x: str(x))
def test_every_validation_error_names_the_file_and_the_field(path, value, field, fragment):
    doc = _valid()
    _set(doc, path, copy.deepcopy(value))
    with pytest.raises(ManifestError) as info:
        parse_manifest(doc, source=SOURCE)
    err = info.value
    assert err.source == SOURCE
    assert err.field == field
    assert str(err).startswith(f"{SOURCE}: field '{field}': ")
    assert fragment in str(err)
    assert isinstance(err, ValueError) and isinstance(err, ModelZooError)


def test_an_artifact_may_carry_an_oms_signature_bundle():
    doc = _valid()
    doc["artifacts"]["notop"]["signature"] = {
        "url": "weights/notop.h5.sig",
        "hash": "sha256:" + "C" * 64,
    }
    m = parse_manifest(doc)
    assert m.artifact("notop").signature.url == "weights/notop.h5.sig"
    assert str(m.artifact("notop").signature.hash) == "sha256:" + "c" * 64
    assert m.artifact("full").signature is None


def test_top_level_must_be_an_object():
    with pytest.raises(ManifestError, match="expected a JSON object") as info:
        parse_manifest([1, 2], source=SOURCE)
    assert info.value.field is None and str(info.value).startswith(SOURCE)


def test_keras_model_artifacts_must_be_whole_models():
    doc = _valid()
    doc["build"] = {"kind": "keras-model"}
    with pytest.raises(ManifestError, match="must be 'keras' or 'h5'") as info:
        parse_manifest(doc, source=SOURCE)
    assert info.value.field == "artifacts.full.format"
    for art in doc["artifacts"].values():
        art["format"] = "keras"
    assert parse_manifest(doc).build.constructor is None


def test_load_manifest_reads_a_file(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(_valid()), encoding="utf-8")
    m = load_manifest(path)
    assert m.name == "demo" and m.source == str(path)


def test_load_manifest_errors_name_the_file(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"name": "demo",\n  oops}', encoding="utf-8")
    with pytest.raises(ManifestError, match=r"not valid JSON \(line 2, column 3") as info:
        load_manifest(bad_json)
    assert info.value.source == str(bad_json) and str(bad_json) in str(info.value)

    binary = tmp_path / "weights.h5"
    binary.write_bytes(b"\x89HDF\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(ManifestError, match="not UTF-8 text") as info:
        load_manifest(binary)
    assert str(binary) in str(info.value)

    missing = tmp_path / "missing.json"
    with pytest.raises(ManifestError, match="cannot read") as info:
        load_manifest(missing)
    assert str(missing) in str(info.value)

    invalid = tmp_path / "invalid.json"
    doc = _valid()
    doc["artifacts"]["full"]["hash"] = "md5:nope"
    invalid.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        load_manifest(invalid)
    assert str(info.value).startswith(f"{invalid}: field 'artifacts.full.hash'")


def test_parse_hash():
    assert parse_hash(None) is None
    assert parse_hash("sha256:" + "0" * 64) == Hash("sha256", "0" * 64)
    assert parse_hash("MD5:" + "f" * 32) == Hash("md5", "f" * 32)  # algorithm is case-blind
    with pytest.raises(ManifestError, match="sha256"):
        parse_hash("sha256:" + "0" * 63)


def test_missing_variant_lists_the_available_ones():
    m = parse_manifest(_valid())
    with pytest.raises(LookupError, match="Available: full, notop"):
        m.artifact("int8")


# --- versions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "constraint", "expected"),
    [
        ("1.2.3", "1.2.3", True),
        ("1.2.4", "1.2.3", False),
        ("1.2.9", "1.2", True),
        ("1.3.0", "1.2", False),
        ("1.9.0", "1", True),
        ("1.4.0", "1.x", True),
        ("2.0.0", "1.x", False),
        ("1.2.7", "1.2.*", True),
        ("1.9.0", "^1.2", True),
        ("2.0.0", "^1.2", False),
        ("0.2.5", "^0.2", True),
        ("0.3.0", "^0.2", False),
        ("0.0.4", "^0.0.3", False),
        ("1.2.9", "~1.2", True),
        ("1.3.0", "~1.2", False),
        ("1.5.0", ">=1,<2", True),
        ("2.0.0", ">=1,<2", False),
        ("1.0.0", "!=1.0.0", False),
        ("1.0.0", " >= 1.0 ", True),
        ("1.0.0", "*", True),
        ("1.0.0", "latest", True),
        ("1.0.0", "", True),
        ("2.0.0-rc.1", "*", False),  # prereleases only when asked for
        ("2.0.0-rc.1", "2.0.0-rc.1", True),
        ("2.0.0-rc.2", ">=2.0.0-rc.1", True),
        ("2.0.0-rc.1", ">=1", False),
        ("1.0.0+build.5", "1.0.0", True),  # build metadata is ignored
    ],
)
def test_matches(version, constraint, expected):
    assert matches(version, constraint) is expected


@pytest.mark.parametrize("constraint", ["x", "^", ">=", "1.2.3.4", "01.2.3", "one", "1.02"])
def test_bad_constraints_raise_value_error(constraint):
    with pytest.raises(ValueError, match="constraint|semantic version"):
        matches("1.0.0", constraint)


def test_version_ordering_follows_semver():
    order = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.2.0",
        "1.10.0",
    ]
    assert sorted(reversed(order), key=parse_version) == order
    assert parse_version("1.0.0+a") == parse_version("1.0.0+b")
    assert not is_version("1.0") and not is_version("v1.0.0") and is_version("1.0.0-rc.1")


def test_best_match_and_split_spec():
    versions = ["1.0.0", "1.9.0", "1.10.0", "2.0.0-rc.1", "junk"]
    assert best_match(versions) == "1.10.0"
    assert best_match(versions, "~1.9") == "1.9.0"
    assert best_match(versions, "2.0.0-rc.1") == "2.0.0-rc.1"
    assert best_match(versions, "3") is None
    assert best_match(["2.0.0-rc.1"]) is None
    assert split_spec(" resnet50 @ ^1 ") == ("resnet50", "^1")
    assert split_spec("resnet50") == ("resnet50", None)
    assert split_spec("resnet50@") == ("resnet50", None)


# An input shape that cannot be built or would not fit in memory is refused up front
# (issue 13 item 10), with the same one-line error as every other field.
ABSURD_INPUT = [
    ([0, 224, 3], "positive integers"),
    ([-1, 224, 3], "positive integers"),
    ([100000, 100000, 3], "too large"),
    ([224, 224], "(height, width, channels)"),
    ([1, 224, 224, 3], "(height, width, channels)"),
    ([16, 16, 3], "min_size 32"),
]


@pytest.mark.parametrize(("shape", "fragment"), ABSURD_INPUT, ids=str)
def test_absurd_input_shapes_are_refused(shape, fragment):
    doc = _valid()
    doc["input"]["shape"] = shape
    with pytest.raises(ManifestError) as info:
        parse_manifest(doc, source=SOURCE)
    assert info.value.field == "input.shape"
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_constructor_input_shape_must_agree_with_input_shape():
    doc = _valid()
    doc["build"]["kwargs"]["input_shape"] = [64, 64, 3]
    with pytest.raises(ManifestError, match="must equal input.shape") as info:
        parse_manifest(doc, source=SOURCE)
    assert info.value.field == "build.kwargs.input_shape"
    doc["build"]["kwargs"]["input_shape"] = [32, 32, 3]
    assert parse_manifest(doc).build.kwargs["input_shape"] == [32, 32, 3]


def test_whole_saved_models_may_take_other_ranks():
    doc = _valid()
    doc["build"] = {"kind": "keras-model"}
    doc["input"] = {"shape": [16]}
    for art in doc["artifacts"].values():
        art["format"] = "keras"
    assert parse_manifest(doc).input.shape == (16,)
    doc["input"]["shape"] = [100000, 100000, 3]
    with pytest.raises(ManifestError, match="too large"):
        parse_manifest(doc)
