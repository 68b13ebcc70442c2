#!/bin/sh
# The Lambda image's install steps, run by the Dockerfile and, into a fresh venv, by
# tests/integration/test_router.py (so the recipe cannot rot without a Docker engine).
#   serve/image/install.sh PYTHON PROJECT_DIR
# No torch, scikit-learn or pyarrow: the router prices with each model's exported numbers (serving.json) in numpy.
set -eu
PYTHON=${1:-python}
PROJECT=${2:-.}
"$PYTHON" -m pip install --quiet -r "$PROJECT/serve/requirements.txt"
# The library and the serve package with their base dependencies, which are the serving stack (the pipeline's are
# the `pipeline` extra: DVC, Prefect, Optuna, Evidently and SHAP stay out of the image; `pip check` holds), built
# from a copy: setuptools writes build/ beside the sources it builds.
SOURCE=$(mktemp -d)
trap 'rm -rf "$SOURCE"' EXIT
cp -R "$PROJECT/pyproject.toml" "$PROJECT/README.md" "$PROJECT/lib" "$PROJECT/serve" "$SOURCE/"
rm -rf "$SOURCE"/serve/__pycache__
rm -rf "$SOURCE"/lib/*.egg-info
"$PYTHON" -m pip install --quiet "$SOURCE"
