# A chapter of the nomagic tour (`nomagic tour recurrent`); its notebook is made from this file.

# %% [markdown]
# # A recurrent network, unrolled
#
# Training is a sequence: what the athlete did this week, and the weather of the last days,
# shape tomorrow. A recurrent neuron reads one day at a time and feeds its own output back
# into itself for the next day: a hidden state, the network's memory. Elman's network:
#
#     h_t = tanh(x_t · W + h_{t−1} · U + b)
#
# Here it reads a week of Seattle weather and says tomorrow's maximum temperature.

# %%
import numpy as np

import nomagic as nm
from nomagic.apps.tour.show import show, table, vec

weather = nm.load_weather()
series = np.column_stack([weather.temp_max, weather.temp_min, np.log1p(weather.precipitation)])
split = len(series) - 365  # the last year is kept back to test on
mean, std = series[:split].mean(axis=0), series[:split].std(axis=0)
scaled = (series - mean) / std
X, Y = nm.windows(scaled, length=7, target=0)  # a week of days -> the next day's max temperature
first_test = split - 7  # windows from here on say days of the last year
X_train, Y_train, X_test, Y_test = X[:first_test], Y[:first_test], X[first_test:], Y[first_test:]

net = nm.inputs(3, name="x") | nm.recurrent(4, "tanh", name="h") | nm.dense(1, name="out")
show(net.summary())
model = nm.fit(net, X_train, Y_train, loss="mse", optimizer=nm.adam(0.01), epochs=40, batch_size=32, seed=0,
               dtype="float64", verbose=False)
error = np.abs(model.predict(X_test) - Y_test)[:, 0] * std[0]  # in °C
same_as_today = np.abs(X_test[:, -1, 0] - Y_test[:, 0]) * std[0]
show(table(["forecast of tomorrow's maximum", "mean error on the last year (°C)"],
           [["the recurrent network", float(error.mean())], ["the same as today", float(same_as_today.mean())]]))

# %% [markdown]
# **Unrolled.** The same network with `return_sequences=True` gives the hidden state after
# every day, not only after the last. The week that ends the data, day by day:

# %%
week = X_test[-1]  # (7 days, 3 features)
states_net = nm.inputs(3, name="x") | nm.recurrent(4, "tanh", return_sequences=True, name="h")
trained_h = {k: v for k, v in model.params.items() if k.startswith("h.")}
states = states_net.predict(trained_h, week[None])[0]  # (7 days, 4 hidden neurons)

# the same, by hand: the loop the engine unrolls
W, U, b = trained_h["h.W"], trained_h["h.U"], trained_h["h.b"]
h = np.zeros(4)
by_hand = []
for x_t in week:
    h = np.tanh(x_t @ W + h @ U + b)
    by_hand.append(h)
by_hand = np.array(by_hand)

# and the forecast the full network makes after each prefix of the week
after_prefix = [float(model.predict(week[None, :t])[0, 0] * std[0] + mean[0]) for t in range(1, 8)]
raw = week * std + mean
show(table(["day", "max °C", "min °C", "rain mm", "hidden state h_t (engine)", "by hand", "forecast after it"],
           [[t + 1, float(raw[t, 0]), float(raw[t, 1]), float(np.expm1(raw[t, 2])), vec(states[t], 2),
             vec(by_hand[t], 2), f"{after_prefix[t]:.1f} °C"] for t in range(7)], digits=1))
show(f"largest difference between the engine's hidden states and the loop: {np.max(np.abs(states - by_hand)):.1e}",
     f"the last hidden state is what the output neuron reads: forecast {after_prefix[-1]:.1f} °C for the next day")
