// txorder console: refreshes the Overview every 5 s from
// /console/overview.json without reloading the page. No other page needs
// a script; the Content-Security-Policy allows this file and nothing inline.
"use strict";
(function () {
  var stamp = document.querySelector("[data-field=generated_at]");
  if (!stamp) {
    return;
  }
  function text(el, s) {
    if (el) {
      el.textContent = s;
    }
  }
  function apply(ov) {
    text(stamp, new Date(ov.generated_at).toISOString().replace("T", " ").replace("Z", " UTC"));
    (ov.checks || []).forEach(function (ch) {
      var card = document.querySelector('[data-check="' + ch.name + '"]');
      if (!card) {
        return;
      }
      card.className = "card " + (ch.up ? "up" : "down");
      text(card.querySelector(".state"), ch.up ? "up" : "down");
      text(card.querySelector(".err"), ch.error || "");
    });
    (ov.breakers || []).forEach(function (b) {
      var card = document.querySelector('[data-breaker="' + b.name + '"]');
      if (card) {
        card.className = "card breaker " + b.state;
        text(card.querySelector(".state"), b.state);
      }
    });
    Object.keys(ov.figures || {}).forEach(function (k) {
      var cell = document.querySelector('[data-figure="' + k + '"]');
      var v = ov.figures[k];
      text(cell, v === null ? "unknown" : String(v));
      var why = document.querySelector('[data-unknown="' + k + '"]');
      text(why, ov.unknown && ov.unknown[k] ? "(" + ov.unknown[k] + ")" : "");
    });
    Object.keys(ov.lag || {}).forEach(function (k) {
      var v = ov.lag[k];
      text(document.querySelector('[data-lag="' + k + '"]'), v === null ? "unknown" : v);
    });
    (ov.rates || []).forEach(function (r) {
      var cell = document.querySelector('[data-rate="' + r.name + '"]');
      text(cell, r.known ? String(Math.round(r.per_minute)) : "–");
    });
  }
  function refresh() {
    fetch("/console/overview.json", { credentials: "same-origin", cache: "no-store" })
      .then(function (res) {
        if (res.status === 401) {
          window.location.href = "/console/login";
          return null;
        }
        return res.ok ? res.json() : null;
      })
      .then(function (ov) {
        if (ov) {
          apply(ov);
        }
      })
      .catch(function () { /* orderd unreachable: keep the last figures */ })
      .finally(function () {
        window.setTimeout(refresh, 5000);
      });
  }
  window.setTimeout(refresh, 5000);
})();
