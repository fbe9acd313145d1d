# Shared by run_classifier_lcqmc.sh and run_ner_cluener.sh (sourced, not run): which model to
# fine-tune. `choose_model` sets INIT_CHECKPOINT (empty = from scratch), SOURCE (a sentence
# for the log), CONFIG_FILE and VOCAB_FILE (unless already set), trying in order:
#   1. $INIT_CHECKPOINT if given;
#   2. the checkpoint in $MODEL_DIR (a released model), downloaded from $MODEL_URL as the
#      original scripts do when the network allows (never with DOWNLOAD=0, never hanging);
#   3. the newest run_pretraining.py output ($PRETRAIN_DIR, else output*/ and runs/);
#   4. none: random weights (the fine-tuning script warns loudly).
# Needs PYTHON, MODEL_DIR, MODEL_URL and SHARED_DATA.

find_checkpoint() {  # the first *.ckpt*.index under $1, as a checkpoint prefix
  local index
  index=$(find "$1" -name '*.ckpt*.index' 2>/dev/null | sort | head -n 1)
  [ -n "$index" ] && echo "${index%.index}"
}

download_model() {  # as the original script, but never hangs offline
  [ "${DOWNLOAD:-1}" = "0" ] && return 1
  echo "downloading $MODEL_URL (timeout 20 s to connect) ..."
  mkdir -p "$MODEL_DIR"
  local zip="$MODEL_DIR/model.zip"
  if curl -fsSL --connect-timeout 20 --max-time 600 -o "$zip" "$MODEL_URL" 2>/dev/null; then
    "$PYTHON" -m zipfile -e "$zip" "$MODEL_DIR" && rm -f "$zip" && return 0
  fi
  rm -f "$zip"
  rmdir "$MODEL_DIR" 2>/dev/null || true
  echo "could not download $MODEL_URL (offline?); going on without it"
  return 1
}

# The latest run_pretraining.py output: "<checkpoint prefix> <matching config>", or nothing.
latest_pretraining_output() {
  "$PYTHON" - "${PRETRAIN_DIR:-}" <<'EOF'
import glob, os, sys
import tensorflow as tf
candidates = [sys.argv[1]] if sys.argv[1] else (
    glob.glob("output*/**/checkpoint", recursive=True) + glob.glob("runs/**/checkpoint", recursive=True))
found = []
for state in candidates:
    directory = state if os.path.isdir(state) else os.path.dirname(state)
    prefix = tf.train.latest_checkpoint(directory)
    if not prefix:
        continue
    names = dict(tf.train.list_variables(prefix))
    if "cls/predictions/output_bias" in names and "output_weights" not in names:
        found.append((os.path.getmtime(prefix + ".index"), prefix, directory, names))
if found:
    _, prefix, directory, names = max(found)
    configs = glob.glob(os.path.join(directory, "*config*.json"))
    if not configs:  # the released tiny configs, by the checkpoint's style
        google = any("/encoder/transformer/" in n for n in names)
        configs = ["configs/albert_config_tiny_google.json" if google else "configs/albert_config_tiny.json"]
    print(prefix, configs[0])
EOF
}

choose_model() {
  if [ -n "${INIT_CHECKPOINT:-}" ]; then
    SOURCE="INIT_CHECKPOINT"
  else
    INIT_CHECKPOINT=$(find_checkpoint "$MODEL_DIR" || true)
    if [ -z "$INIT_CHECKPOINT" ] && [ ! -d "$MODEL_DIR" ] && download_model; then
      INIT_CHECKPOINT=$(find_checkpoint "$MODEL_DIR" || true)
    fi
    if [ -n "$INIT_CHECKPOINT" ]; then
      SOURCE="pretrained model in $MODEL_DIR"
      CONFIG_FILE=${CONFIG_FILE:-$(find "$(dirname "$INIT_CHECKPOINT")" -name '*config*.json' | head -n 1)}
      VOCAB_FILE=${VOCAB_FILE:-$(find "$(dirname "$INIT_CHECKPOINT")" -name 'vocab.txt' | head -n 1)}
    else
      read -r INIT_CHECKPOINT PRETRAIN_CONFIG <<<"$(latest_pretraining_output || true)" || true
      if [ -n "${INIT_CHECKPOINT:-}" ]; then
        SOURCE="latest run_pretraining.py output"
        CONFIG_FILE=${CONFIG_FILE:-$PRETRAIN_CONFIG}
      else
        INIT_CHECKPOINT=""
        SOURCE="NONE: training from scratch (expect far lower scores than a pretrained model)"
      fi
    fi
  fi
  CONFIG_FILE=${CONFIG_FILE:-configs/albert_config_tiny.json}
  VOCAB_FILE=${VOCAB_FILE:-$SHARED_DATA/vocab.txt}
  [ -f "$VOCAB_FILE" ] || die "vocab file $VOCAB_FILE not found (set VOCAB_FILE)"
}
