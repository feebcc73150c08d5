# A chapter of the nomagic tour (`nomagic tour bias`); its notebook is made from this file.

# %% [markdown]
# # Data is always biased
#
# Deep learning is no magic, and that cuts both ways: a network knows only the days it was
# shown. Train the planner's multi-layer network (rest, easy, long or hard?) on summer days
# only, and ask it about winter. Beside it, the same network trained on as many days drawn
# from all seasons. Both are tested on the winter days of the last year, which neither saw.

# %%
import numpy as np

import nomagic as nm
from nomagic.apps.planner import audit, dataset, features, logfile, shipped
from nomagic.apps.planner.sessions import CLASSES
from nomagic.apps.tour.show import show, table

data = dataset.build(logfile.read_log(None), shipped.seattle_weather())
days = features.sample_days(data)
X_raw, y = features.day_matrix(data, days), data.classes[days]
season = audit.season(data.dates[days])
last_year = days >= len(data) - 365
winter_test = np.flatnonzero(last_year & (season == "winter"))
summer_only = np.flatnonzero(~last_year & (season == "summer"))
all_seasons = np.sort(np.random.default_rng(0).choice(np.flatnonzero(~last_year), len(summer_only), replace=False))


def train(idx):
    scaler = features.Scaler.fit(X_raw[idx])
    net = nm.inputs(X_raw.shape[1]) | nm.dense(16, "relu") | nm.dense(len(CLASSES), "softmax")
    model = nm.fit(net, scaler.transform(X_raw[idx]), y[idx], loss="cross_entropy", optimizer=nm.adam(0.01),
                   epochs=60, batch_size=32, seed=0, dtype="float64", verbose=False)
    return lambda idx: model.predict(scaler.transform(X_raw[idx])).argmax(axis=1)


predict_summer, predict_all = train(summer_only), train(all_seasons)
on_winter = {"summer only": predict_summer(winter_test), "all seasons": predict_all(winter_test)}
accuracy = {name: float(np.mean(p == y[winter_test])) for name, p in on_winter.items()}
show(f"{len(summer_only)} training days each; {len(winter_test)} winter test days")
show(table(["trained on", "train-day accuracy", "winter accuracy"] + [f"says {c}" for c in CLASSES],
           [["summer only", float(np.mean(predict_summer(summer_only) == y[summer_only])), accuracy["summer only"],
             *np.bincount(on_winter["summer only"], minlength=4)],
            ["all seasons", float(np.mean(predict_all(all_seasons) == y[all_seasons])), accuracy["all seasons"],
             *np.bincount(on_winter["all seasons"], minlength=4)],
            ["(what the athlete did)", "", "", *np.bincount(y[winter_test], minlength=4)]]))

# %% [markdown]
# Class by class: on the winter days the athlete did each kind of session, how often did each
# model recommend just that?

# %%
truth = y[winter_test]
rows = []
for k, c in enumerate(CLASSES):
    on = truth == k
    rows.append([c, int(on.sum())] + [f"{int(np.sum(p[on] == k))} ({np.mean(p[on] == k):.0%})" if on.any() else "–"
                                      for p in on_winter.values()])
show(table(["the athlete did", "winter days", "summer-only model agrees", "all-seasons model agrees"], rows))

# %% [markdown]
# **The audit catches it.** The planner's bias audit looks at the days a model learned from
# (and, when given, its hold-out predictions and the weather it is asked about) and says in
# plain words where the data is thin or lopsided. Here it is for the summer-only model, asked
# about the winter:

# %%
report = audit.audit(dataset.subset(data.weather, days[summer_only]), y[summer_only],
                     holdout=audit.Holdout(dataset.subset(data.weather, days[winter_test]), y[winter_test],
                                           on_winter["summer only"]),
                     user_weather=dataset.subset(data.weather, days[winter_test]))
show(f"{len(report.warnings)} warnings:", *(f"  - {w}" for w in report.warnings))
