#!/usr/bin/env bash
# Fine-tune ALBERT for Chinese NER on CLUENER2020 and report the dev entity F1.
#
#   bash run_ner_cluener.sh              # softmax head
#   USE_CRF=1 bash run_ner_cluener.sh    # CRF head
#
# Each setting can be overridden by an environment variable, e.g.
# `NUM_TRAIN_EPOCHS=1 bash run_ner_cluener.sh`:
#   MAX_SEQ_LENGTH TRAIN_BATCH_SIZE LEARNING_RATE NUM_TRAIN_EPOCHS WARMUP_PROPORTION SEED
#   USE_CRF=1 (CRF head) CRF_LEARNING_RATE (its transitions' learning rate, default 1e-3)
#   DATA_DIR        default data/cluener if it has train/dev/test.json, else
#                   ../shared/data/cluener (the official public release). The script reports
#                   the DEV F1: published CLUENER results are F1 on the hidden test labels
#                   (leaderboard), a different protocol: never compare the two.
#   INIT_CHECKPOINT default: the checkpoint in MODEL_DIR (prev_trained_model/albert_tiny_489k,
#                   downloaded as albert_zh's scripts do when the network allows), else the
#                   latest run_pretraining.py output (PRETRAIN_DIR, output*/, runs/), else none:
#                   from scratch (warned)
#   CONFIG_FILE VOCAB_FILE OUTPUT_DIR PYTHON EXTRA_FLAGS (passed on to run_ner.py)
#   DOWNLOAD=0      never try to download
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python}
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-128}
TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-32}
LEARNING_RATE=${LEARNING_RATE:-1e-4}
NUM_TRAIN_EPOCHS=${NUM_TRAIN_EPOCHS:-4}
WARMUP_PROPORTION=${WARMUP_PROPORTION:-0.1}
CRF_LEARNING_RATE=${CRF_LEARNING_RATE:-1e-3}
SEED=${SEED:-12345}
SHARED_DATA=${ALBERT_ZH_DATA:-../shared/data}
MODEL_DIR=${MODEL_DIR:-prev_trained_model/albert_tiny_489k}
MODEL_URL=${MODEL_URL:-https://storage.googleapis.com/albert_zh/albert_tiny_489k.zip}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

die() { echo "error: $*" >&2; exit 2; }
has_split_files() { [ -f "$1/train.json" ] && [ -f "$1/dev.json" ] && [ -f "$1/test.json" ]; }

# ---------------------------------------------------------------- data
if [ -n "${DATA_DIR:-}" ]; then
  has_split_files "$DATA_DIR" || die "DATA_DIR=$DATA_DIR lacks train.json, dev.json or test.json"
elif has_split_files data/cluener; then
  DATA_DIR=data/cluener
elif has_split_files "$SHARED_DATA/cluener"; then
  DATA_DIR="$SHARED_DATA/cluener"
else
  die "no CLUENER data: put train/dev/test.json in data/cluener, or the shared data in $SHARED_DATA"
fi
PROTOCOL="CLUENER2020 dev F1 ($DATA_DIR); published CLUENER results are test-set (leaderboard) F1: NOT comparable"

# ---------------------------------------------------------------- model
# shellcheck source=find_model.sh
source find_model.sh
choose_model
if [ "${USE_CRF:-0}" = "1" ]; then
  HEAD="CRF (transitions lr $CRF_LEARNING_RATE)"
  HEAD_FLAGS="--use_crf --crf_learning_rate=$CRF_LEARNING_RATE"
else
  HEAD="softmax"
  HEAD_FLAGS=""
fi
OUTPUT_DIR=${OUTPUT_DIR:-output/cluener_$(date +%Y%m%d_%H%M%S)}

echo "== run_ner_cluener.sh"
echo "data:       $DATA_DIR"
echo "model:      ${INIT_CHECKPOINT:-<random init>}  [$SOURCE]"
echo "config:     $CONFIG_FILE"
echo "vocab:      $VOCAB_FILE"
echo "head:       $HEAD"
echo "output:     $OUTPUT_DIR"
echo "hparams:    seq $MAX_SEQ_LENGTH, batch $TRAIN_BATCH_SIZE, lr $LEARNING_RATE, epochs $NUM_TRAIN_EPOCHS, warmup $WARMUP_PROPORTION, seed $SEED"

start=$(date +%s)
# shellcheck disable=SC2086  # HEAD_FLAGS and EXTRA_FLAGS are lists of flags
"$PYTHON" run_ner.py \
  --task_name=cluener \
  --data_dir="$DATA_DIR" \
  --vocab_file="$VOCAB_FILE" \
  --bert_config_file="$CONFIG_FILE" \
  ${INIT_CHECKPOINT:+--init_checkpoint="$INIT_CHECKPOINT"} \
  --output_dir="$OUTPUT_DIR" \
  --do_train --do_eval --do_predict \
  --max_seq_length="$MAX_SEQ_LENGTH" \
  --train_batch_size="$TRAIN_BATCH_SIZE" \
  --eval_batch_size=128 --predict_batch_size=128 \
  --learning_rate="$LEARNING_RATE" \
  --num_train_epochs="$NUM_TRAIN_EPOCHS" \
  --warmup_proportion="$WARMUP_PROPORTION" \
  --iterations_per_loop=50 \
  --save_checkpoints_steps=0 \
  --seed="$SEED" \
  $HEAD_FLAGS \
  ${EXTRA_FLAGS:-}

echo "== done in $(( $(date +%s) - start )) s; results in $OUTPUT_DIR (eval_results.txt, cluener_predict.json, test_predictions.txt)"
echo "== $PROTOCOL"
"$PYTHON" - "$OUTPUT_DIR/final_results.json" <<'EOF'
import json, sys
results = json.load(open(sys.argv[1]))
dev = results["dev"]
print(f"dev entity F1: {dev['f1']:.4f}  (precision {dev['precision']:.4f}, recall {dev['recall']:.4f}; {results['checkpoint']}, step {results['global_step']})")
for name, row in sorted(dev.get("per_type", {}).items()):
    print(f"  {name:<13} f1 {row['f1']:.4f}  (support {row['support']})")
EOF
