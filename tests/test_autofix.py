"""`rnnlint check --fix / --unsafe-fixes / --diff`: each fix gives exactly the expected text
(formatting and comments kept), the result parses, its finding is gone, a second run changes
nothing, and fixes that cannot be certain are not offered."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path
from typing import List, Optional

import pytest

from lintutil import run_cli
from rnnlint.config import Config
from rnnlint.fixes import FixOutcome, fix_source


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def config(*codes: str, **options) -> Config:  # type: ignore[no-untyped-def]
    """Only the codes under test, so that rules added later cannot change these texts."""
    return Config(select=list(codes), options=dict(options))


def codes_of(outcome: FixOutcome) -> List[str]:
    return [f.code for f in outcome.result.findings]


def assert_fixes(
    bad: str, expected: str, codes: List[str], unsafe: bool = False, cfg: Optional[Config] = None
) -> FixOutcome:
    cfg = cfg or config(*codes)
    outcome = fix_source("train.py", src(bad), cfg, unsafe=unsafe)
    assert outcome.text == src(expected), outcome.diff()
    ast.parse(outcome.text)
    assert not outcome.result.errors
    assert not set(codes) & set(codes_of(outcome)), codes_of(outcome)
    again = fix_source("train.py", outcome.text, cfg, unsafe=unsafe)
    assert again.applied == [] and again.text == outcome.text
    return outcome


def assert_not_fixed(bad: str, code: str, unsafe: bool = True) -> None:
    """The finding is there, and no fix is applied for it."""
    outcome = fix_source("train.py", src(bad), config(code), unsafe=unsafe)
    assert code in codes_of(outcome)
    assert outcome.applied == [] and outcome.text == src(bad)


# -- RNN402 functional-dropout-always-on ---------------------------------------------------

DROPOUT_MODEL = """
import torch.nn as nn
import torch.nn.functional as F


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(32, 64, num_layers=2, dropout=0.3)
        self.head = nn.Linear(64, 5)

    def forward(self, x):
        out, _ = self.gru(x)
{body}
"""


def test_rnn402_adds_training_argument_and_keeps_comments():
    bad = DROPOUT_MODEL.format(body=(
        "        out = F.dropout(out, 0.5)  # before the head\n"
        "        out = F.dropout(out, p=0.2, training=True)\n"
        "        return self.head(F.dropout(\n"
        "            out,\n"
        "            p=0.1,\n"
        "        ))\n"
    ))
    good = DROPOUT_MODEL.format(body=(
        "        out = F.dropout(out, 0.5, training=self.training)  # before the head\n"
        "        out = F.dropout(out, p=0.2, training=self.training)\n"
        "        return self.head(F.dropout(\n"
        "            out,\n"
        "            p=0.1,\n"
        "            training=self.training,\n"
        "        ))\n"
    ))
    outcome = assert_fixes(bad, good, ["RNN402"])
    assert outcome.applied == ["RNN402: pass training=self.training"] * 3


def test_rnn402_positional_training_true_is_replaced():
    bad = DROPOUT_MODEL.format(body="        return self.head(F.dropout(out, 0.5, True))\n")
    good = DROPOUT_MODEL.format(body="        return self.head(F.dropout(out, 0.5, self.training))\n")
    assert_fixes(bad, good, ["RNN402"])


def test_rnn402_not_fixed_outside_an_nn_module():
    # A plain class has no self.training: the finding stays, with no fix.
    assert_not_fixed(
        """
        import torch.nn.functional as F

        class Augment:
            def apply(self, x):
                return F.dropout(x, 0.1)
        """,
        "RNN402",
    )


def test_suppressed_finding_is_not_fixed():
    bad = DROPOUT_MODEL.format(body="        return F.dropout(out, 0.5)  # noqa: RNN402\n")
    outcome = fix_source("train.py", src(bad), config("RNN402"))
    assert outcome.applied == [] and outcome.text == src(bad)


# -- RNN401 dropout-single-layer -----------------------------------------------------------

def test_rnn401_drops_the_dropout_argument():
    bad = """
    import torch.nn as nn

    encoder = nn.LSTM(
        input_size=32,
        hidden_size=64,  # wide enough
        dropout=0.3,  # regularise
    )
    decoder = nn.GRU(64, 64, dropout=0.5, batch_first=True)
    tail = nn.LSTM(32, 64, 1, True, False, 0.25)
    """
    good = """
    import torch.nn as nn

    encoder = nn.LSTM(
        input_size=32,
        hidden_size=64,  # wide enough
    )
    decoder = nn.GRU(64, 64, batch_first=True)
    tail = nn.LSTM(32, 64, 1, True, False)
    """
    outcome = assert_fixes(bad, good, ["RNN401"])
    assert outcome.applied[0] == "RNN401: remove dropout=0.3, which does nothing with num_layers=1"


def test_rnn401_not_fixed_when_num_layers_comes_from_a_setting():
    # NUM_LAYERS is 1 here, but a setting may be raised; then the dropout would act.
    assert_not_fixed(
        """
        import torch.nn as nn

        NUM_LAYERS = 1
        rnn = nn.LSTM(32, 64, num_layers=NUM_LAYERS, dropout=0.2)
        """,
        "RNN401",
    )


# -- RNN502 h0-batch-first / RNN509 state-fixed-batch-size ---------------------------------

STATE_MODEL = """
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

BATCH_SIZE = 32
NUM_LAYERS = 2


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden_size = 64
        self.lstm = nn.LSTM(8, 64, num_layers=NUM_LAYERS, batch_first={batch_first})

    def forward(self, x):
{body}
        out, _ = self.lstm(x, (h0, c0))
        return out


loader = DataLoader(range(100), batch_size=BATCH_SIZE)
"""


def test_rnn502_swaps_to_layers_batch_hidden():
    bad = STATE_MODEL.format(batch_first=True, body=(
        "        h0 = torch.zeros(x.size(0), NUM_LAYERS, self.hidden_size)  # initial state\n"
        "        c0 = torch.zeros((x.size(0), NUM_LAYERS, self.hidden_size))"
    ))
    good = STATE_MODEL.format(batch_first=True, body=(
        "        h0 = torch.zeros(NUM_LAYERS, x.size(0), self.hidden_size)  # initial state\n"
        "        c0 = torch.zeros((NUM_LAYERS, x.size(0), self.hidden_size))"
    ))
    assert_fixes(bad, good, ["RNN502"])


def test_rnn509_uses_the_input_batch_axis():
    bad = STATE_MODEL.format(batch_first=False, body=(
        "        h0 = torch.zeros(NUM_LAYERS, BATCH_SIZE, self.hidden_size)\n"
        "        c0 = torch.zeros(NUM_LAYERS, BATCH_SIZE, self.hidden_size)"
    ))
    good = STATE_MODEL.format(batch_first=False, body=(
        "        h0 = torch.zeros(NUM_LAYERS, x.size(1), self.hidden_size)\n"
        "        c0 = torch.zeros(NUM_LAYERS, x.size(1), self.hidden_size)"
    ))
    assert_fixes(bad, good, ["RNN509"])


def test_rnn502_and_rnn509_on_one_state_are_fixed_in_two_rounds():
    bad = STATE_MODEL.format(batch_first=True, body=(
        "        h0 = torch.zeros(BATCH_SIZE, NUM_LAYERS, self.hidden_size)\n"
        "        c0 = torch.zeros(BATCH_SIZE, NUM_LAYERS, self.hidden_size)"
    ))
    good = STATE_MODEL.format(batch_first=True, body=(
        "        h0 = torch.zeros(NUM_LAYERS, x.size(0), self.hidden_size)\n"
        "        c0 = torch.zeros(NUM_LAYERS, x.size(0), self.hidden_size)"
    ))
    outcome = assert_fixes(bad, good, ["RNN502", "RNN509"])
    assert [a.split(":")[0] for a in outcome.applied] == ["RNN502", "RNN502", "RNN509", "RNN509"]


def test_rnn509_not_fixed_when_the_input_is_transformed_first():
    # After x = self.embed(x) the batch axis of the layer's input is not the parameter's.
    bad = STATE_MODEL.format(batch_first=False, body=(
        "        x = self.embed(x)\n"
        "        h0 = torch.zeros(NUM_LAYERS, BATCH_SIZE, self.hidden_size)\n"
        "        c0 = torch.zeros(NUM_LAYERS, BATCH_SIZE, self.hidden_size)"
    ))
    assert_not_fixed(bad, "RNN509")


# -- RNN101 no-grad-clipping (unsafe) ------------------------------------------------------

TORCH_HEAD = """
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 32, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0]

"""


def test_rnn101_torch_inserts_clip_after_backward():
    body = """
    model = Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(3):
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = model(xb).mean()
            loss.backward()  # gradients
            # update
            optimizer.step()
    """
    fixed = body.replace(
        "loss.backward()  # gradients\n",
        "loss.backward()  # gradients\n"
        "            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)\n",
    )
    bad, good = TORCH_HEAD + src(body), TORCH_HEAD + src(fixed)
    outcome = assert_fixes(bad, good, ["RNN101"], unsafe=True)
    assert outcome.applied == ["RNN101: clip gradients to max_norm=1.0 before optimizer.step()"]
    # Unsafe: --fix alone leaves it.
    safe_only = fix_source("train.py", src(bad), config("RNN101"))
    assert safe_only.text == src(bad) and safe_only.unsafe_left == 1


def test_rnn101_amp_gets_unscale_and_clip_with_configured_norm():
    body = """
    def train(net, loader, opt, scaler):
        for xb, yb in loader:
            opt.zero_grad()
            with torch.autocast("cuda"):
                loss = net(xb).mean()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()


    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train(model, [], optimizer, torch.cuda.amp.GradScaler())
    """
    fixed = body.replace(
        "scaler.scale(loss).backward()\n",
        "scaler.scale(loss).backward()\n"
        "            scaler.unscale_(opt)\n"
        "            torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm=0.5)\n",
    )
    cfg = config("RNN101", RNN101={"fix-max-norm": 0.5})
    assert_fixes(TORCH_HEAD + src(body), TORCH_HEAD + src(fixed), ["RNN101"], unsafe=True, cfg=cfg)


def test_rnn101_amp_clip_goes_after_existing_unscale():
    body = """
    model = Net()
    optimizer = torch.optim.Adam(model.parameters())
    scaler = torch.cuda.amp.GradScaler()
    for xb, yb in loader:
        optimizer.zero_grad()
        scaler.scale(model(xb).mean()).backward()
        scaler.unscale_(optimizer)
        scaler.step(optimizer)
        scaler.update()
    """
    fixed = body.replace(
        "scaler.unscale_(optimizer)\n",
        "scaler.unscale_(optimizer)\n"
        "        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)\n",
    )
    assert_fixes(TORCH_HEAD + src(body), TORCH_HEAD + src(fixed), ["RNN101"], unsafe=True)


def test_rnn101_not_fixed_when_the_model_is_not_known():
    # The optimizer comes from elsewhere: which parameters to clip is not in the file.
    body = """
    def train(net, loader, optimizer):
        for xb, yb in loader:
            optimizer.zero_grad()
            net(xb).mean().backward()
            optimizer.step()
    """
    assert_not_fixed(TORCH_HEAD + src(body), "RNN101")


def test_rnn101_lightning_trainer_gets_gradient_clip_val():
    bad = """
    import lightning as L
    import torch.nn as nn

    rnn = nn.GRU(8, 16)
    trainer = L.Trainer(max_epochs=10)
    """
    good = """
    import lightning as L
    import torch.nn as nn

    rnn = nn.GRU(8, 16)
    trainer = L.Trainer(max_epochs=10, gradient_clip_val=1.0)
    """
    assert_fixes(bad, good, ["RNN101"], unsafe=True)


def test_rnn101_keras_string_optimizer_becomes_class_with_import():
    bad = """
    from tensorflow.keras.layers import LSTM, Dense
    from tensorflow.keras.models import Sequential

    model = Sequential([LSTM(32, input_shape=(10, 3)), Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    """
    good = """
    from tensorflow.keras.layers import LSTM, Dense
    from tensorflow.keras.models import Sequential
    from tensorflow.keras.optimizers import Adam

    model = Sequential([LSTM(32, input_shape=(10, 3)), Dense(1)])
    model.compile(optimizer=Adam(clipnorm=1.0), loss="mse")
    """
    assert_fixes(bad, good, ["RNN101"], unsafe=True)


def test_rnn101_keras_optimizer_gets_clipnorm_through_existing_import():
    bad = """
    import tensorflow as tf

    model = tf.keras.Sequential([tf.keras.layers.GRU(32), tf.keras.layers.Dense(1)])
    opt = tf.keras.optimizers.Adam(learning_rate=1e-3)
    model.compile(optimizer=opt, loss="mse")
    other = tf.keras.Sequential([tf.keras.layers.GRU(32), tf.keras.layers.Dense(1)])
    other.compile("rmsprop", "mse")
    """
    good = """
    import tensorflow as tf

    model = tf.keras.Sequential([tf.keras.layers.GRU(32), tf.keras.layers.Dense(1)])
    opt = tf.keras.optimizers.Adam(learning_rate=1e-3, clipnorm=1.0)
    model.compile(optimizer=opt, loss="mse")
    other = tf.keras.Sequential([tf.keras.layers.GRU(32), tf.keras.layers.Dense(1)])
    other.compile(tf.keras.optimizers.RMSprop(clipnorm=1.0), "mse")
    """
    assert_fixes(bad, good, ["RNN101"], unsafe=True)


# -- RNN105 loss-graph-accumulated / RNN107 best-checkpoint-aliased (safe) -----------------

LOOP = """
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 32, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0]


model = Net()
optimizer = torch.optim.Adam(model.parameters())
criterion = nn.MSELoss()
best_loss = float("inf")
best_state = None
for epoch in range(10):
    total = 0.0
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
{accumulate}
    if total < best_loss:
        best_loss = total
{keep}
model.load_state_dict(best_state)
"""


def test_rnn105_adds_item_and_rnn107_deepcopies_with_import():
    bad = LOOP.format(accumulate="        total += loss  # running sum", keep="        best_state = model.state_dict()")
    good = LOOP.format(
        accumulate="        total += loss.item()  # running sum",
        keep="        best_state = copy.deepcopy(model.state_dict())",
    ).replace("import torch.nn as nn\n", "import torch.nn as nn\nimport copy\n", 1)
    outcome = assert_fixes(bad, good, ["RNN105", "RNN107"])
    assert outcome.applied == [
        "RNN105: add .item() to the loss in the running total",
        "RNN107: keep copy.deepcopy(model.state_dict())",
    ]


def test_rnn105_detaches_when_the_total_is_used_as_a_tensor():
    # total.item() later: a float total would break it, so the loss is detached instead.
    bad = LOOP.format(
        accumulate="        total = total + loss\n    print(total.item())",
        keep="        best_state = {k: v for k, v in model.state_dict().items()}",
    ).replace("import torch\n", "import torch\nfrom copy import deepcopy\n", 1)
    good = LOOP.format(
        accumulate="        total = total + loss.detach()\n    print(total.item())",
        keep="        best_state = deepcopy(model.state_dict())",
    ).replace("import torch\n", "import torch\nfrom copy import deepcopy\n", 1)
    assert_fixes(bad, good, ["RNN105", "RNN107"])


# -- the command line ----------------------------------------------------------------------

CLI_BAD = TORCH_HEAD.replace("nn.LSTM(8, 32, batch_first=True)", "nn.LSTM(8, 32, dropout=0.2)") + src(
    """
    model = Net()
    optimizer = torch.optim.Adam(model.parameters())
    for xb, yb in loader:
        optimizer.zero_grad()
        model(xb).mean().backward()
        optimizer.step()
    """
)


def write(tmp_path: Path, text: str, name: str = "train.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_cli_diff_writes_nothing_and_exits_1(tmp_path):
    path = write(tmp_path, CLI_BAD)
    proc = run_cli("check", "--no-config", "--select", "RNN1,RNN4", "--diff", str(path))
    assert proc.returncode == 1, proc.stderr
    assert path.read_text() == CLI_BAD
    assert proc.stdout.startswith(f"--- a/{path}\n+++ b/{path}\n")
    assert "-        self.lstm = nn.LSTM(8, 32, dropout=0.2)\n+        self.lstm = nn.LSTM(8, 32)\n" in proc.stdout
    assert "clip_grad_norm_" not in proc.stdout
    assert "1 fix would be applied (--diff: nothing written) (1 more with --unsafe-fixes)" in proc.stderr


def test_cli_fix_reports_what_remains_and_exits_1(tmp_path):
    path = write(tmp_path, CLI_BAD)
    proc = run_cli("check", "--no-config", "--select", "RNN1,RNN4", "--fix", "-q", str(path))
    assert proc.returncode == 1, proc.stderr
    assert "nn.LSTM(8, 32)\n" in path.read_text()
    assert [line.split(" ")[1] for line in proc.stdout.splitlines()] == ["RNN101"]
    assert "1 fix applied (1 more with --unsafe-fixes)" in proc.stderr


def test_cli_unsafe_fix_clears_the_file_and_exits_0(tmp_path):
    path = write(tmp_path, CLI_BAD)
    proc = run_cli("check", "--no-config", "--select", "RNN1,RNN4", "--fix", "--unsafe-fixes", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 fixes applied" in proc.stderr
    assert "    model(xb).mean().backward()\n    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)\n" in path.read_text()
    again = run_cli("check", "--no-config", "--select", "RNN1,RNN4", "--diff", "--unsafe-fixes", str(path))
    assert again.returncode == 0 and again.stdout == ""
    assert "0 fixes would be applied" in again.stderr


def test_cli_fix_keeps_crlf_line_endings(tmp_path):
    path = tmp_path / "train.py"
    path.write_bytes(CLI_BAD.replace("\n", "\r\n").encode())
    proc = run_cli("check", "--no-config", "--select", "RNN4", "--fix", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = path.read_bytes()
    assert b"nn.LSTM(8, 32)\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")


def test_cli_max_norm_from_config_and_validation(tmp_path):
    path = write(tmp_path, CLI_BAD)
    (tmp_path / "pyproject.toml").write_text('[tool.rnnlint]\nselect = ["RNN101"]\n\n[tool.rnnlint.RNN101]\nfix-max-norm = 5\n')
    proc = run_cli("check", "--fix", "--unsafe-fixes", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "clip_grad_norm_(model.parameters(), max_norm=5)\n" in path.read_text()
    (tmp_path / "pyproject.toml").write_text('[tool.rnnlint.RNN101]\nfix-max-norm = "big"\n')
    proc = run_cli("check", "--fix", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and "fix-max-norm" in proc.stderr


def test_cli_unsafe_fixes_needs_fix_or_diff(tmp_path):
    path = write(tmp_path, CLI_BAD)
    proc = run_cli("check", "--no-config", "--unsafe-fixes", str(path))
    assert proc.returncode == 2 and "--unsafe-fixes needs --fix or --diff" in proc.stderr
    assert path.read_text() == CLI_BAD


@pytest.mark.parametrize("flag", ["--fix", "--diff"])
def test_cli_fix_leaves_unparsable_files_alone(tmp_path, flag):
    path = write(tmp_path, "import torch\ndef broken(:\n")
    proc = run_cli("check", "--no-config", flag, str(path))
    assert proc.returncode == 2
    assert path.read_text() == "import torch\ndef broken(:\n"
