#!/usr/bin/env bash
# Build a Spark batch image from a serving image (.ci/spark/TARGET.Dockerfile):
#   .ci/spark/build.sh dataproc|operator SERVING_IMAGE TAG
# dataproc: the serving image + pyarrow, for Dataproc Serverless (which mounts Spark and Java);
# operator: + pyspark (Spark's jars and scripts), py4j and Debian's OpenJDK 17, for the Spark
# operator. The wheels are requirements.lock's, hash-checked as pip downloads them here, so
# the build reaches no Python index (the operator's needs Debian's apt). pyspark is published
# as a source archive only: the checked archive is made into a wheel here, once per machine,
# in the wheel cache ($MLSHIP_WHEEL_CACHE, default ~/.cache/mlship/wheels).
# Needs bash, python3 with pip, and the Docker CLI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
target=${1:?usage: build.sh dataproc|operator SERVING_IMAGE TAG}
serving=${2:?usage: build.sh dataproc|operator SERVING_IMAGE TAG}
tag=${3:?usage: build.sh dataproc|operator SERVING_IMAGE TAG}
case "$target" in
dataproc) packages=(pyarrow) ;;
operator) packages=(pyarrow pyspark py4j) ;;
*) echo "build.sh: no target '$target' (dataproc or operator)" >&2; exit 2 ;;
esac
if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "build.sh: python3 has no pip, which downloads the wheels (Debian: python3-pip)" >&2
    exit 1
fi
lock="$here/../../requirements.lock"
cache=${MLSHIP_WHEEL_CACHE:-$HOME/.cache/mlship/wheels}
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir -p "$cache"

# each package's block of the lock (its pin and hashes): the wheels' lock, and the sources'
pick() {  # pick NAME... < requirements.lock
    awk -v names="$*" 'BEGIN { split(names, n, " "); for (i in n) want[n[i]] = 1 }
        /^[^ #]/ { split($1, pin, "=="); keep = (pin[1] in want) } keep'
}
pick "${packages[@]}" <"$lock" >"$context/requirements-spark.lock"
for name in "${packages[@]}"; do
    if ! grep -q "^$name==" "$context/requirements-spark.lock"; then
        echo "build.sh: requirements.lock pins no $name (make lock)" >&2
        exit 1
    fi
done
version_of() { sed -n "s/^$1==\([^ ]*\).*/\1/p" "$context/requirements-spark.lock"; }

binaries=()
for name in "${packages[@]}"; do [[ "$name" == pyspark ]] || binaries+=("$name"); done
pick "${binaries[@]}" <"$context/requirements-spark.lock" >"$context/binaries.lock"
# the image's Python: CPython 3.11 on x86-64 Linux, whatever this machine's is
image_python=(--only-binary=:all: --python-version 3.11 --implementation cp --abi cp311
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
    --platform manylinux2014_x86_64)
python3 -m pip download --quiet --no-deps --require-hashes "${image_python[@]}" \
    -r "$context/binaries.lock" -d "$cache"
if [[ " ${packages[*]} " == *" pyspark "* ]]; then
    version=$(version_of pyspark)
    if ! compgen -G "$cache/pyspark-$version-py*.whl" >/dev/null; then
        pick pyspark <"$context/requirements-spark.lock" >"$context/sources.lock"
        python3 -m pip download --quiet --no-deps --require-hashes --no-binary=:all: \
            -r "$context/sources.lock" -d "$context/sources"
        python3 -m pip wheel --quiet --no-deps -w "$cache" "$context"/sources/pyspark-*
    fi
fi
wheels=()
for name in "${packages[@]}"; do
    wheel=$(compgen -G "$cache/${name//-/_}-$(version_of "$name")-*.whl" | head -n 1 || true)
    if [[ -z "$wheel" ]]; then
        echo "build.sh: no wheel of $name $(version_of "$name") in $cache" >&2
        exit 1
    fi
    wheels+=("$wheel")
done
# installed here for the image's Python, as one folder to copy: a stage installing them in
# the image would leave a second copy of the serving image per stage on the build machine
python3 -m pip install --quiet --no-deps --no-compile "${image_python[@]}" \
    --target "$context/spark-python" "${wheels[@]}"
find "$context/spark-python" -depth -type d \( -name tests -o -name __pycache__ \) \
    -exec rm -rf {} +
rm -rf "$context/spark-python/bin"

cp "$here/score.py" "$here/entrypoint.sh" "$context/"
docker build --network host --file "$here/$target.Dockerfile" \
    --build-arg SERVING_IMAGE="$serving" --tag "$tag" "$context"
