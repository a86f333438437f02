#!/usr/bin/env bash
# timm's own model contract (tests/test_models.py of the installed timm's sdist) for every name this package
# registers. Too slow for the default CI job on two cores (29 full-size models through forward, backward, fx,
# features, pruning); run it by hand after changing the model surface:
#
#   benchmarks/timm_contract.sh                       # pytest-xdist workers: all cores; WORKERS=4 to change
#   MODELS="w18_small" benchmarks/timm_contract.sh -x  # a -k expression narrows the models; pytest arguments
#
# The sdist is fetched from PyPI with pip (once, into $TIMM_SDIST_DIR, default ~/.cache/hrnet-backbones). timm's
# tests select models by name at import time, so hrnet_backbones is imported first, as a pytest plugin
# (benchmarks/timm_contract_plugin.py). The checks that cannot apply to a model by nature are deselected below,
# each with the reason; everything else must pass.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
python="${PYTHON:-python}"
version="$("$python" -c 'import timm; print(timm.__version__)')"
cache="${TIMM_SDIST_DIR:-$HOME/.cache/hrnet-backbones}"
src="$cache/timm-$version"
if [[ ! -f "$src/tests/test_models.py" ]]; then
    mkdir -p "$cache"
    "$python" -m pip download "timm==$version" --no-deps --no-binary :all: -d "$cache" >/dev/null
    tar -xzf "$cache/timm-$version.tar.gz" -C "$cache"
fi

# Not applicable by nature (README, "timm's contract"):
# - test_model_forward_features asserts that features_only=True returns at least 3 feature levels by default; a
#   V2 model's features are its one concatenated map (hrnetv2_* returns [15C @ stride 4]; every level is still
#   reachable with out_indices, and test_model_forward_intermediates checks all six).
deselect=()
while read -r name; do
    deselect+=(--deselect "tests/test_models.py::test_model_forward_features[1-$name]")
done < <("$python" -c 'import hrnet_backbones as h; print("\n".join(n for n in h.model_names() if n.startswith("hrnetv2_")))')

cd "$src"  # timm's pyproject.toml declares the markers its tests use
export PYTHONPATH="$repo:$here${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m pytest tests/test_models.py -p timm_contract_plugin -p no:cacheprovider \
    -k "hrnet and not pretrained${MODELS:+ and ($MODELS)}" "${deselect[@]}" -n "${WORKERS:-auto}" -q "$@"
