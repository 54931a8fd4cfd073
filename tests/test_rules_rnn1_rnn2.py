"""RNN105-107 and RNN203-206: firing variants at their exact line, and near-misses that stay silent.

A line that must be reported ends with the marker comment `# <-`; `expect` checks that the
rule reports exactly those lines (and nothing when there is no marker)."""

from __future__ import annotations

import textwrap
from typing import List

import pytest

from lintutil import lint

TORCH_HEAD = '''
import copy

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 32, batch_first=True)
        self.head = nn.Linear(32, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


x, y = torch.randn(512, 20, 4), torch.randn(512, 1)
train_loader = DataLoader(TensorDataset(x[:400], y[:400]), batch_size=32, shuffle=True)
val_loader = DataLoader(TensorDataset(x[400:], y[400:]), batch_size=32)
model = Net()
criterion = nn.MSELoss()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
'''

KERAS_HEAD = '''
import numpy as np
import keras
from keras.callbacks import EarlyStopping, ModelCheckpoint, ReduceLROnPlateau
from keras.layers import LSTM, Dense, Input

x = np.random.rand(1000, 30, 4).astype("float32")
y = np.random.rand(1000, 1).astype("float32")
model = keras.Sequential([Input(shape=(30, 4)), LSTM(32), Dense(1)])
model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3, clipnorm=1.0), loss="mse")
'''


def expect(code: str, body: str, head: str = TORCH_HEAD) -> None:
    source = textwrap.dedent(head) + textwrap.dedent(body)
    wanted = [i for i, line in enumerate(source.splitlines(), 1) if line.rstrip().endswith("# <-")]
    findings = lint(source)
    got = [f.line for f in findings if f.code == code]
    assert got == wanted, (code, got, wanted, [(f.code, f.line, f.message) for f in findings])


def messages(code: str, body: str, head: str = TORCH_HEAD) -> List[str]:
    source = textwrap.dedent(head) + textwrap.dedent(body)
    return [f.message for f in lint(source) if f.code == code]


# -- RNN105 loss-graph-accumulated ---------------------------------------------------------

TRAIN_LOOP = '''
for epoch in range(10):
    total_loss = 0.0
    losses = []
    for xb, yb in train_loader:
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        {line}
'''

RNN105_BAD = [
    "total_loss += loss  # <-",
    "total_loss = total_loss + loss  # <-",
    "total_loss += loss * xb.size(0)  # <-",
    "total_loss += loss.mean()  # <-",
    "losses.append(loss)  # <-",
]
RNN105_GOOD = [
    "total_loss += loss.item()",
    "total_loss += loss.detach()",
    "total_loss += float(loss)",
    "total_loss += loss.item() * xb.size(0)",
    "losses.append(loss.item())",
    "total_loss += loss.data",
]


@pytest.mark.parametrize("line", RNN105_BAD)
def test_rnn105_fires_on_the_loss_operand(line):
    expect("RNN105", TRAIN_LOOP.format(line=line))


@pytest.mark.parametrize("line", RNN105_GOOD)
def test_rnn105_detached_values_are_silent(line):
    expect("RNN105", TRAIN_LOOP.format(line=line))


def test_rnn105_reports_the_operand_node_and_names_it():
    source = textwrap.dedent(TORCH_HEAD) + textwrap.dedent(TRAIN_LOOP.format(line="total_loss += loss"))
    [finding] = [f for f in lint(source) if f.code == "RNN105"]
    assert (finding.column, finding.end_column) == (23, 27)  # exactly `loss`
    assert "'total_loss += loss'" in finding.message and "loss.item()" in finding.message


def test_rnn105_scaled_backward_and_function_returning_total():
    expect("RNN105", '''
    scaler = torch.cuda.amp.GradScaler()


    def train_epoch(loader):
        running = 0.0
        for xb, yb in loader:
            optimizer.zero_grad()
            out = model(xb)
            batch_loss = criterion(out, yb)
            scaler.scale(batch_loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            running += batch_loss  # <-
        return running / len(loader)
    ''')


def test_rnn105_validation_without_no_grad_in_a_training_function():
    expect("RNN105", '''
    def fit(epochs):
        for epoch in range(epochs):
            for xb, yb in train_loader:
                optimizer.zero_grad()
                loss = criterion(model(xb), yb)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
            val_total = 0.0
            for xb, yb in val_loader:
                val_total += criterion(model(xb), yb)  # <-
    ''')


def test_rnn105_sum_over_time_steps_then_backward_is_silent():
    expect("RNN105", '''
    cell = nn.LSTMCell(4, 32)
    for xb, yb in train_loader:
        optimizer.zero_grad()
        h = c = torch.zeros(xb.size(0), 32)
        loss = 0
        for t in range(xb.size(1)):
            h, c = cell(xb[:, t], (h, c))
            loss += criterion(model.head(h), yb)
        loss = loss / xb.size(1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    ''')


def test_rnn105_no_grad_and_helper_returning_sum_are_silent():
    expect("RNN105", '''
    def evaluate(loader):
        model.eval()
        total = 0.0
        with torch.no_grad():
            for xb, yb in loader:
                loss = criterion(model(xb), yb)
                total += loss
        return total / len(loader)


    def sequence_loss(out, target):
        loss = 0.0
        for t in range(out.size(1)):
            loss += criterion(out[:, t], target[:, t])
        return loss


    @torch.no_grad()
    def test_loss(loader):
        losses = []
        for xb, yb in loader:
            losses.append(criterion(model(xb), yb))
        return torch.stack(losses).mean()


    for xb, yb in train_loader:
        optimizer.zero_grad()
        loss = sequence_loss(model(xb), yb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss = loss.item()
        epoch_loss = 0.0
        epoch_loss += loss
    ''')


# -- RNN106 lr-change-not-applied ----------------------------------------------------------

EPOCH_LOOP = '''
lr = 1e-3
opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
for epoch in range(60):
    for xb, yb in train_loader:
        opt.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    if epoch % 20 == 19:
        {change}
        {after}
'''


@pytest.mark.parametrize(
    "change",
    ["lr *= 0.5  # <-", "lr /= 10  # <-", "lr = lr * 0.1  # <-", "lr = max(lr * 0.5, 1e-5)  # <-"],
)
def test_rnn106_fires_on_unapplied_changes(change):
    expect("RNN106", EPOCH_LOOP.format(change=change, after='print(f"lr now {lr}")'))


@pytest.mark.parametrize(
    "after",
    [
        "for g in opt.param_groups:\n            g['lr'] = lr",
        "opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)",
        "adjust_learning_rate(opt, lr)",
        "opt.param_groups[0]['lr'] = lr",
    ],
)
def test_rnn106_applied_changes_are_silent(after):
    expect("RNN106", EPOCH_LOOP.format(change="lr *= 0.5", after=after))


def test_rnn106_increase_and_read_back_are_silent():
    expect("RNN106", EPOCH_LOOP.format(change="lr *= 1.5", after="pass"))
    expect("RNN106", EPOCH_LOOP.format(change="lr = opt.param_groups[0]['lr']", after="pass"))


def test_rnn106_message_names_the_construction_line():
    [message] = messages("RNN106", EPOCH_LOOP.format(change="lr *= 0.5", after="pass"))
    line = textwrap.dedent(TORCH_HEAD + EPOCH_LOOP).splitlines().index(
        "opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)"
    ) + 1
    assert f"'lr *= 0.5' changes lr after torch.optim.SGD(..., lr=lr) was built (line {line})" in message


def test_rnn106_keras_stages():
    expect("RNN106", '''
    lr = 1e-3
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr, clipnorm=1.0), loss="mse")
    for stage in range(3):
        model.fit(x, y, epochs=10, batch_size=64)
        lr = lr / 10  # <-
    ''', head=KERAS_HEAD)


def test_rnn106_keras_recompiled_or_set_is_silent():
    expect("RNN106", '''
    lr = 1e-3
    for stage in range(3):
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr, clipnorm=1.0), loss="mse")
        model.fit(x, y, epochs=10, batch_size=64)
        lr /= 10
    ''', head=KERAS_HEAD)
    expect("RNN106", '''
    lr = 1e-3
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr, clipnorm=1.0), loss="mse")
    for stage in range(3):
        model.fit(x, y, epochs=10, batch_size=64)
        lr /= 10
        keras.backend.set_value(model.optimizer.learning_rate, lr)
    ''', head=KERAS_HEAD)


# -- RNN107 best-checkpoint-aliased --------------------------------------------------------

BEST_LOOP = '''
best_loss, best_state = float("inf"), None
for epoch in range(30):
    model.train()
    for xb, yb in train_loader:
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()
    with torch.no_grad():
        val_loss = sum(criterion(model(xb), yb).item() for xb, yb in val_loader)
    if val_loss < best_loss:
        {keep}
{after}
'''


@pytest.mark.parametrize(
    "keep",
    [
        "best_loss = val_loss\n        best_state = model.state_dict()  # <-",
        "best_loss = val_loss\n        best_state = model.state_dict().copy()  # <-",
        "best_loss, best_state = val_loss, model.state_dict()  # <-",
        "best_loss = val_loss\n        best_state = dict(model.state_dict())  # <-",
        "best_loss = val_loss\n        best_state = {k: v for k, v in model.state_dict().items()}  # <-",
    ],
)
def test_rnn107_fires_on_aliasing_copies(keep):
    expect("RNN107", BEST_LOOP.format(keep=keep, after="model.load_state_dict(best_state)"))


@pytest.mark.parametrize(
    "keep",
    [
        "best_loss = val_loss\n        best_state = copy.deepcopy(model.state_dict())",
        "best_loss = val_loss\n        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}",
        "best_loss = val_loss\n        best_state = model.state_dict()\n        torch.save(best_state, 'best.pt')",
        "best_loss = val_loss\n        torch.save(model.state_dict(), 'best.pt')",
    ],
)
def test_rnn107_deep_copies_and_saves_are_silent(keep):
    expect("RNN107", BEST_LOOP.format(keep=keep, after="print(best_loss)"))


def test_rnn107_reports_the_copy_call_and_names_the_restore():
    source = textwrap.dedent(TORCH_HEAD) + textwrap.dedent(
        BEST_LOOP.format(keep="best_state = model.state_dict().copy()", after="model.load_state_dict(best_state)")
    )
    [finding] = [f for f in lint(source) if f.code == "RNN107"]
    line = source.splitlines()[finding.line - 1]
    assert line[finding.column - 1:finding.end_column - 1] == "model.state_dict().copy()"
    assert "load_state_dict(best_state) restores the final weights" in finding.message


def test_rnn107_model_rebuilt_per_trial_is_silent():
    expect("RNN107", '''
    best_score, best_weights = float("inf"), None
    for hidden in (16, 32, 64):
        net = Net()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        for epoch in range(5):
            for xb, yb in train_loader:
                opt.zero_grad()
                loss = criterion(net(xb), yb)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
        score = loss.item()
        if score < best_score:
            best_score, best_weights = score, net.state_dict()
    ''')


def test_rnn107_last_state_saved_after_training():
    expect("RNN107", '''
    for epoch in range(30):
        for xb, yb in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        if loss.item() < 0.1:
            snapshot = model.state_dict()  # <-
    torch.save(snapshot, "snapshot.pt")
    ''')


# -- RNN203 plateau-stepped-per-batch ------------------------------------------------------

PLATEAU_LOOP = '''
scheduler = ReduceLROnPlateau(optimizer, factor=0.5, patience=5, min_lr=1e-6)
for epoch in range(30):
    for {target} in {loader}:
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        {step}
'''


@pytest.mark.parametrize(
    "target,loader",
    [("xb, yb", "train_loader"), ("i, (xb, yb)", "enumerate(train_loader)"), ("i", "range(0, len(x), 32)")],
)
def test_rnn203_fires_in_batch_loops(target, loader):
    body = PLATEAU_LOOP.format(target=target, loader=loader, step="scheduler.step(loss.item())  # <-")
    if target == "i":
        body = body.replace("for i in range(0, len(x), 32):", "for i in range(0, len(x), 32):\n        xb, yb = x[i:i + 32], y[i:i + 32]")
    expect("RNN203", body)


def test_rnn203_message_counts_batches():
    body = PLATEAU_LOOP.format(target="xb, yb", loader="train_loader", step="scheduler.step(loss)")
    [message] = messages("RNN203", body)
    assert message.startswith("scheduler.step(loss) runs once per batch")
    assert "patience=5 counts batches, so 6 batches" in message


def test_rnn203_per_batch_step_helper():
    expect("RNN203", '''
    scheduler = ReduceLROnPlateau(optimizer, factor=0.5, patience=5)


    def train_step(xb, yb):
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step(loss)  # <-


    for epoch in range(10):
        for xb, yb in train_loader:
            train_step(xb, yb)
    ''')


def test_rnn203_per_epoch_periodic_and_full_batch_are_silent():
    expect("RNN203", '''
    scheduler = ReduceLROnPlateau(optimizer, factor=0.5, patience=5)
    for epoch in range(30):
        for step, (xb, yb) in enumerate(train_loader):
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            if step % 100 == 99:
                scheduler.step(loss.item())
        scheduler.step(loss.item())

    for epoch in range(500):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step(loss)
    ''')


STEP_HELPER = '''
scheduler = ReduceLROnPlateau(optimizer, factor=0.5, patience=5)


def train_step(model, xb, yb):
    optimizer.zero_grad()
    loss = criterion(model(xb), yb)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    {step}
    return loss.item()


for epoch in range(10):
    {collect}
    {after}
'''


@pytest.mark.parametrize(
    "collect",
    [
        "losses = [train_step(model, xb, yb) for xb, yb in train_loader]",
        "total = sum(train_step(model, xb, yb) for i, (xb, yb) in enumerate(train_loader))",
        "losses = [train_step(model, xb, yb) for xb, yb in zip(x_chunks, y_chunks)]",
    ],
)
def test_rnn203_step_helper_called_from_a_comprehension(collect):
    expect("RNN203", STEP_HELPER.format(step="scheduler.step(loss.item())  # <-", collect=collect, after="pass"))


def test_rnn203_comprehension_then_one_step_per_epoch_is_silent():
    expect("RNN203", STEP_HELPER.format(
        step="pass",
        collect="losses = [train_step(model, xb, yb) for xb, yb in train_loader]",
        after="scheduler.step(sum(losses) / len(losses))",
    ))


@pytest.mark.parametrize(
    "collect",
    [
        # a filtered comprehension runs on some batches only
        "losses = [train_step(model, xb, yb) for i, (xb, yb) in enumerate(train_loader) if i % 50 == 0]",
        # one full-batch step per epoch
        "loss = train_step(model, x, y)",
        # a comprehension over epochs, not batches
        "losses = [train_step(model, x, y) for epoch_i in range(3)]",
    ],
)
def test_rnn203_step_helper_not_per_batch_is_silent(collect):
    expect("RNN203", STEP_HELPER.format(step="scheduler.step(loss.item())", collect=collect, after="pass"))


def test_rnn203_scheduler_passed_under_another_parameter_name():
    expect("RNN203", '''
    scheduler = ReduceLROnPlateau(optimizer, factor=0.5, patience=5)


    def train_epoch(model, loader, opt, lr_sched, val_loss):
        for batch in loader:
            xb, yb = batch
            opt.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            lr_sched.step(val_loss)  # <-


    val_loss = 1.0
    for epoch in range(10):
        train_epoch(model, train_loader, optimizer, scheduler, val_loss)
    ''')


def test_rnn203_parameter_also_given_another_scheduler_is_silent():
    expect("RNN203", '''
    scheduler = ReduceLROnPlateau(optimizer, factor=0.5, patience=5)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, s / 100))


    def train_epoch(model, loader, opt, lr_sched, val_loss):
        for batch in loader:
            xb, yb = batch
            opt.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            lr_sched.step(val_loss)


    train_epoch(model, train_loader, optimizer, warmup, 0.0)
    for epoch in range(10):
        train_epoch(model, train_loader, optimizer, scheduler, 1.0)
    ''')


SCHEDULE_HELPER = '''
scheduler = ReduceLROnPlateau(optimizer, factor=0.5, patience=5)


def adjust_lr(metric):
    scheduler.step(metric){mark}


for epoch in range(10):
    for step, (xb, yb) in enumerate(train_loader):
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        {call}
    {epoch_call}
'''


def test_rnn203_schedule_helper_called_per_batch():
    expect("RNN203", SCHEDULE_HELPER.format(mark="  # <-", call="adjust_lr(loss.item())", epoch_call="pass"))


@pytest.mark.parametrize(
    "call,epoch_call",
    [
        ("pass", "adjust_lr(loss.item())"),
        ("if step % 100 == 99:\n            adjust_lr(loss.item())", "pass"),
        ("if step == len(train_loader) - 1:\n            adjust_lr(loss.item())", "pass"),
    ],
)
def test_rnn203_schedule_helper_per_epoch_or_guarded_is_silent(call, epoch_call):
    expect("RNN203", SCHEDULE_HELPER.format(mark="", call=call, epoch_call=epoch_call))


def test_rnn203_helper_in_hyperparameter_sweep_is_silent():
    expect("RNN203", '''
    scheduler = ReduceLROnPlateau(optimizer, factor=0.5, patience=5)


    def run(batch_size):
        loader = DataLoader(TensorDataset(x, y), batch_size=batch_size)
        for epoch in range(10):
            for xb, yb in loader:
                optimizer.zero_grad()
                loss = criterion(model(xb), yb)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
        scheduler.step(loss.item())


    for batch_size in (16, 32, 64):
        run(batch_size)
    ''')


def test_rnn203_per_batch_scheduler_that_is_not_a_plateau_is_silent():
    expect("RNN203", PLATEAU_LOOP.replace(
        "scheduler = ReduceLROnPlateau(optimizer, factor=0.5, patience=5, min_lr=1e-6)",
        "scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=400)",
    ).format(target="xb, yb", loader="train_loader", step="scheduler.step()"))


# -- RNN204 plateau-mode-mismatch ----------------------------------------------------------

MODE_LOOP = '''
scheduler = ReduceLROnPlateau(optimizer, {mode}factor=0.5, patience=5)  # <-
for epoch in range(30):
    for xb, yb in train_loader:
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    with torch.no_grad():
        val_acc = 0.5
        val_loss = 0.1
        metrics = {{"val_f1": 0.4}}
    scheduler.step({metric})
'''


@pytest.mark.parametrize(
    "mode,metric",
    [("", "val_acc"), ("mode='min', ", "metrics['val_f1']"), ("'max', ", "val_loss"), ("", "float(val_acc)")],
)
def test_rnn204_fires_on_reversed_direction(mode, metric):
    expect("RNN204", MODE_LOOP.format(mode=mode, metric=metric))


@pytest.mark.parametrize(
    "mode,metric",
    [("", "val_loss"), ("mode='max', ", "val_acc"), ("", "-val_acc"), ("", "1 - val_acc")],
)
def test_rnn204_matching_or_unreadable_direction_is_silent(mode, metric):
    expect("RNN204", MODE_LOOP.replace("  # <-", "").format(mode=mode, metric=metric))


def test_rnn204_keras_monitor():
    expect("RNN204", '''
    a = ReduceLROnPlateau(monitor="val_accuracy", mode="min", factor=0.5, patience=5)  # <-
    b = ReduceLROnPlateau(monitor="val_loss", mode="max", factor=0.5, patience=5)  # <-
    c = ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=5)
    d = ReduceLROnPlateau(monitor="val_accuracy", mode="max", factor=0.5, patience=5)
    e = ReduceLROnPlateau("val_mae", 0.5, 5, 1, "min")
    model.fit(x, y, epochs=50, validation_split=0.2, callbacks=[a, b, c, d, e])
    ''', head=KERAS_HEAD)


def test_rnn204_metric_names():
    from rnnlint.rules.rnn2_schedule import metric_direction

    assert metric_direction("val_acc") == "max"
    assert metric_direction("valAccuracy") == "max"
    assert metric_direction("val_loss") == "min"
    assert metric_direction("accum_loss") == "min"
    assert metric_direction("dev_rmse") == "min"
    assert metric_direction("loss_acc_ratio") is None
    assert metric_direction("metric") is None


# -- RNN205 early-stop-before-plateau ------------------------------------------------------


def test_rnn205_keras_callbacks():
    expect("RNN205", '''
    callbacks = [
        ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=8),
        EarlyStopping(monitor="val_loss", patience=8, restore_best_weights=True),  # <-
    ]
    model.fit(x, y, epochs=200, validation_split=0.2, callbacks=callbacks)
    ''', head=KERAS_HEAD)


def test_rnn205_keras_default_patience_and_names():
    expect("RNN205", '''
    reduce_lr = ReduceLROnPlateau(factor=0.5, patience=3)
    stop = EarlyStopping(restore_best_weights=True)  # <-
    model.fit(x, y, epochs=200, validation_split=0.2, callbacks=[reduce_lr, stop])
    ''', head=KERAS_HEAD)


def test_rnn205_keras_longer_patience_or_other_monitor_is_silent():
    expect("RNN205", '''
    reduce_lr = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=5)
    stop = EarlyStopping(monitor="val_loss", patience=15)
    model.fit(x, y, epochs=200, validation_split=0.2, callbacks=[reduce_lr, stop])
    reduce_train = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=10)
    stop_val = EarlyStopping(monitor="val_loss", patience=5)
    model.fit(x, y, epochs=200, validation_split=0.2, callbacks=[reduce_train, stop_val])
    ''', head=KERAS_HEAD)


TORCH_STOP = '''
PATIENCE = {patience}
scheduler = ReduceLROnPlateau(optimizer, factor=0.5, patience=5)
best, bad = float("inf"), 0
for epoch in range(100):
    for xb, yb in train_loader:
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    val_loss = loss.item()
    scheduler.step(val_loss)
    if val_loss < best:
        best, bad = val_loss, 0
    else:
        bad += 1
    if {test}:  # <-
        break
'''


@pytest.mark.parametrize("patience,test", [(5, "bad >= PATIENCE"), (3, "bad > PATIENCE"), (4, "PATIENCE <= bad")])
def test_rnn205_torch_counter(patience, test):
    expect("RNN205", TORCH_STOP.format(patience=patience, test=test))


@pytest.mark.parametrize("patience,test", [(12, "bad >= PATIENCE"), (3, "bad >= PATIENCE and epoch % 5 == 0")])
def test_rnn205_torch_longer_or_unclear_counter_is_silent(patience, test):
    expect("RNN205", TORCH_STOP.replace("  # <-", "").format(patience=patience, test=test))


def test_rnn205_torch_early_stopper_class():
    expect("RNN205", '''
    class EarlyStopping:
        def __init__(self, patience=7, delta=0.0):
            self.patience, self.delta, self.counter, self.early_stop = patience, delta, 0, False

        def __call__(self, val_loss):
            pass


    scheduler = ReduceLROnPlateau(optimizer, factor=0.5, patience=10)
    stopper = EarlyStopping()  # <-
    for epoch in range(100):
        for xb, yb in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        scheduler.step(loss.item())
        stopper(loss.item())
        if stopper.early_stop:
            break
    ''')


# -- RNN206 schedule-cannot-fire -----------------------------------------------------------


def test_rnn206_torch_plateau_and_counter():
    expect("RNN206", '''
    EPOCHS = 20
    scheduler = ReduceLROnPlateau(optimizer, factor=0.5, patience=20)  # <-
    bad = 0
    for epoch in range(1, EPOCHS + 1):
        for xb, yb in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        scheduler.step(loss.item())
        if loss.item() < 0.1:
            bad = 0
        else:
            bad += 1
        if bad >= 25:  # <-
            break
    ''')


def test_rnn206_torch_shorter_patience_or_unknown_epochs_is_silent():
    expect("RNN206", '''
    import sys

    scheduler = ReduceLROnPlateau(optimizer, factor=0.5, patience=19)
    for epoch in range(20):
        for xb, yb in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        scheduler.step(loss.item())
    other = ReduceLROnPlateau(optimizer, factor=0.5, patience=50)
    for epoch in range(int(sys.argv[1])):
        other.step(loss.item())
    ''')


def test_rnn206_keras_patience_and_unused_callback():
    expect("RNN206", '''
    EPOCHS = 10
    checkpoint = ModelCheckpoint("best.keras", save_best_only=True)  # <-
    reduce_lr = ReduceLROnPlateau(factor=0.5, patience=10)  # <-
    stop = EarlyStopping(patience=12, restore_best_weights=True)  # <-
    model.fit(x, y, epochs=EPOCHS, validation_split=0.2, callbacks=[reduce_lr, stop])
    ''', head=KERAS_HEAD)


def test_rnn206_keras_used_callbacks_and_long_runs_are_silent():
    expect("RNN206", '''
    checkpoint = ModelCheckpoint("best.keras", save_best_only=True)
    reduce_lr = ReduceLROnPlateau(factor=0.5, patience=4)
    callbacks = [checkpoint, reduce_lr, EarlyStopping(patience=12)]
    model.fit(x, y, epochs=100, validation_split=0.2, callbacks=callbacks)
    for fold in range(3):
        model.fit(x, y, epochs=5, callbacks=[EarlyStopping(patience=10)])
    ''', head=KERAS_HEAD)


def test_rnn202_is_moot_for_a_plateau_that_can_never_cut():
    # RNN206 says the scheduler never fires; a missing min_lr floor (RNN202) adds nothing.
    idle_keras = '''
    reduce_lr = ReduceLROnPlateau(factor=0.5, patience={patience})  # <-
    model.fit(x, y, epochs=50, validation_split=0.2, callbacks=[reduce_lr])
    '''
    expect("RNN206", idle_keras.format(patience=100), head=KERAS_HEAD)
    expect("RNN202", idle_keras.format(patience=100).replace("  # <-", ""), head=KERAS_HEAD)
    expect("RNN202", idle_keras.format(patience=5), head=KERAS_HEAD)  # it can cut: the floor matters
    idle_torch = '''
    scheduler = ReduceLROnPlateau(optimizer, factor=0.5, patience={patience})  # <-
    for epoch in range(30):
        for xb, yb in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        scheduler.step(loss.item())
    '''
    expect("RNN206", idle_torch.format(patience=30))
    expect("RNN202", idle_torch.format(patience=30).replace("  # <-", ""))
    expect("RNN202", idle_torch.format(patience=3))


def test_rnn107_save_nested_in_the_same_branch_is_silent():
    expect("RNN107", BEST_LOOP.format(
        keep="best_loss = val_loss\n        best_state = model.state_dict()\n        if epoch > 5:\n            torch.save(best_state, 'best.pt')",
        after="print(best_loss)",
    ))


def test_rnn106_an_unknown_factor_is_not_a_known_decrease():
    from lintutil import lint
    src = '''
import torch
import torch.nn as nn
from myproject.config import load_config
cfg = load_config()
decay = cfg.decay
model = nn.LSTM(8, 16)
lr = 0.1
optimizer = torch.optim.SGD(model.parameters(), lr=lr)
for epoch in range(10):
    for x, y in loader:
        optimizer.zero_grad()
        out, _ = model(x)
        loss = (out - y).pow(2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    lr = lr * decay
    print(lr)
'''
    assert [f.code for f in lint(src) if f.code == "RNN106"] == []
    assert [(f.code, f.line) for f in lint(src.replace("lr * decay", "lr * 0.5")) if f.code == "RNN106"] == [("RNN106", 18)]
