#!/usr/bin/env bash
# Fine-tune ALBERT on LCQMC sentence-pair matching and report dev and test accuracy.
#
#   bash run_classifier_lcqmc.sh
#
# Hyper-parameters are albert_zh's (seq 128, batch 64, lr 1e-4, 5 epochs); each can be
# overridden by an environment variable, e.g. `NUM_TRAIN_EPOCHS=1 bash run_classifier_lcqmc.sh`:
#   MAX_SEQ_LENGTH TRAIN_BATCH_SIZE LEARNING_RATE NUM_TRAIN_EPOCHS WARMUP_PROPORTION SEED
#   DATA_DIR        default data/lcqmc (full LCQMC, standard protocol) if it has train/dev/test.txt,
#                   else ../shared/data/lcqmc_small (the local protocol: NOT comparable with
#                   published LCQMC numbers, which train on 238k pairs)
#   INIT_CHECKPOINT default: the checkpoint in MODEL_DIR (prev_trained_model/albert_tiny_489k,
#                   downloaded as the original does when the network allows), else the latest
#                   run_pretraining.py output (PRETRAIN_DIR, output*/, runs/), else none: from
#                   scratch (warned)
#   CONFIG_FILE VOCAB_FILE OUTPUT_DIR PYTHON EXTRA_FLAGS (passed on to run_classifier.py)
#   DOWNLOAD=0      never try to download
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python}
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-128}
TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-64}
LEARNING_RATE=${LEARNING_RATE:-1e-4}
NUM_TRAIN_EPOCHS=${NUM_TRAIN_EPOCHS:-5}
WARMUP_PROPORTION=${WARMUP_PROPORTION:-0.1}
SEED=${SEED:-12345}
SHARED_DATA=${ALBERT_ZH_DATA:-../shared/data}
MODEL_DIR=${MODEL_DIR:-prev_trained_model/albert_tiny_489k}
MODEL_URL=${MODEL_URL:-https://storage.googleapis.com/albert_zh/albert_tiny_489k.zip}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

die() { echo "error: $*" >&2; exit 2; }
has_split_files() { [ -f "$1/train.txt" ] && [ -f "$1/dev.txt" ] && [ -f "$1/test.txt" ]; }

# ---------------------------------------------------------------- data
if [ -n "${DATA_DIR:-}" ]; then
  has_split_files "$DATA_DIR" || die "DATA_DIR=$DATA_DIR lacks train.txt, dev.txt or test.txt"
  PROTOCOL="DATA_DIR=$DATA_DIR"
elif has_split_files data/lcqmc; then
  DATA_DIR=data/lcqmc
  PROTOCOL="full LCQMC (standard protocol)"
elif has_split_files "$SHARED_DATA/lcqmc_small"; then
  DATA_DIR="$SHARED_DATA/lcqmc_small"
  PROTOCOL="lcqmc_small (7,922 train pairs; NOT comparable with published LCQMC results)"
else
  die "no LCQMC data: put train/dev/test.txt in data/lcqmc, or the shared data in $SHARED_DATA"
fi

# ---------------------------------------------------------------- model
# shellcheck source=find_model.sh
source find_model.sh
choose_model
OUTPUT_DIR=${OUTPUT_DIR:-output/lcqmc_$(date +%Y%m%d_%H%M%S)}

echo "== run_classifier_lcqmc.sh"
echo "data:       $DATA_DIR  [$PROTOCOL]"
echo "model:      ${INIT_CHECKPOINT:-<random init>}  [$SOURCE]"
echo "config:     $CONFIG_FILE"
echo "vocab:      $VOCAB_FILE"
echo "output:     $OUTPUT_DIR"
echo "hparams:    seq $MAX_SEQ_LENGTH, batch $TRAIN_BATCH_SIZE, lr $LEARNING_RATE, epochs $NUM_TRAIN_EPOCHS, warmup $WARMUP_PROPORTION, seed $SEED"

start=$(date +%s)
# shellcheck disable=SC2086  # EXTRA_FLAGS is a list of flags
"$PYTHON" run_classifier.py \
  --task_name=lcqmc \
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
  ${EXTRA_FLAGS:-}

echo "== done in $(( $(date +%s) - start )) s; results in $OUTPUT_DIR (eval_results.txt, test_predictions.tsv)"
echo "== $PROTOCOL"
"$PYTHON" - "$OUTPUT_DIR/final_results.json" <<'EOF'
import json, sys
results = json.load(open(sys.argv[1]))
print(f"dev accuracy:  {results['dev']['accuracy']:.4f}  ({results['checkpoint']}, step {results['global_step']})")
print(f"test accuracy: {results['test']['accuracy']:.4f}")
EOF
