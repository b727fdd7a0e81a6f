#!/usr/bin/env bash
# The README's pictures of the control tools on a z-space run (docs/images/dcgan_mnist_projection.png and
# docs/images/dcgan_mnist_edit_1to7.png), made by the project's own commands:
#
#   GANTRAIN_DATA=/path/to/data bash scripts/control_pictures.sh RUN [OUT_FOLDER]
#
# RUN: an unconditional MNIST run at 28 px (the pictures in docs/images come from `gantrain experiment=dcgan_mnist
# seed=0`, 10,000 steps). Four MNIST *test* digits (the first 1, 3, 4 and 9 of the test split, which no run trains
# on) are projected into z (`gantrain-project ... steps=1000 space=z`); their target | start | end strips are
# stacked into one picture. A labels direction from 1 to 7 (`gantrain-directions method=labels classes=1,7`) then
# moves the projected 1 along strengths 0 to 6 (`gantrain-sample latent=... direction=...`).
set -euo pipefail
case ${1:-} in
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
  -*) echo "control_pictures.sh: unknown option $1; usage: scripts/control_pictures.sh RUN [OUT_FOLDER]" >&2; exit 2 ;;
esac
RUN=${1:?usage: scripts/control_pictures.sh RUN [OUT_FOLDER]}
[ -e "$RUN" ] || { echo "control_pictures.sh: $RUN: no such run folder or checkpoint" >&2; exit 2; }
OUT=${2:-docs/images}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

python - "$WORK/digits" <<'EOF'
import os, sys
from PIL import Image
from gantrain.data.images import MNIST

test = MNIST(root=os.environ.get("GANTRAIN_DATA", "data"), image_size=28, download=False, train=False)
images, labels = test.tensor(), test.labels()
os.makedirs(sys.argv[1])
for digit in (1, 3, 4, 9):
    i = int((labels == digit).nonzero()[0])
    Image.fromarray(images[i, 0].numpy()).save(f"{sys.argv[1]}/test{i:05d}_{digit}.png")
EOF
gantrain-project "$RUN" input="$WORK/digits" out="$WORK/projected" steps=1000 space=z
gantrain-directions "$RUN" method=labels classes=1,7 out="$WORK/1to7.npz"
one=$(ls "$WORK/projected"/*_1.npz)
gantrain-sample "$RUN" latent="$one" direction="$WORK/1to7.npz:0" strength=0:6:7 out="$OUT/dcgan_mnist_edit_1to7.png" overwrite=true
python - "$WORK/projected" "$OUT/dcgan_mnist_projection.png" <<'EOF'
import glob, sys
from PIL import Image

strips = [Image.open(f) for f in sorted(glob.glob(f"{sys.argv[1]}/*_strip.png"))]
picture = Image.new(strips[0].mode, (max(s.width for s in strips), sum(s.height for s in strips)))
y = 0
for strip in strips:
    picture.paste(strip, (0, y))
    y += strip.height
picture.save(sys.argv[2])
print(f"wrote {sys.argv[2]}")
EOF
