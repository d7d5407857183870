// pgwarden console: the only script. Pages work without it; it adds
//  - the session replay's step / play controls (one timeline step at a time), and
//  - the approvals queue's refresh (reload when the set of pending requests changes,
//    unless the person is typing a reason).
(function () {
  "use strict";

  function initReplay(timeline) {
    var steps = Array.prototype.slice.call(timeline.querySelectorAll("li.step"));
    var controls = document.getElementById("replay-controls");
    if (!steps.length || !controls) return;
    var position = document.getElementById("replay-position");
    var speed = document.getElementById("replay-speed");
    var showAll = document.getElementById("replay-all");
    var button = function (act) { return controls.querySelector('[data-act="' + act + '"]'); };
    var playButton = button("play");
    var current = 0;
    var timer = null;

    function show(index, scroll) {
      current = Math.max(0, Math.min(index, steps.length - 1));
      steps.forEach(function (step, i) {
        step.classList.toggle("current", i === current);
        step.classList.toggle("future", i > current);
        if (i === current) step.setAttribute("aria-current", "step");
        else step.removeAttribute("aria-current");
      });
      position.textContent = "step " + (current + 1) + " of " + steps.length;
      button("first").disabled = button("prev").disabled = current === 0;
      button("next").disabled = button("last").disabled = current === steps.length - 1;
      if (history.replaceState) history.replaceState(null, "", "#step-" + (current + 1));
      if (scroll) steps[current].scrollIntoView({ block: "nearest" });
    }

    function stop() {
      if (timer !== null) clearInterval(timer);
      timer = null;
      playButton.textContent = "▶ Play";
      timeline.classList.remove("playing");
    }

    function play() {
      if (current >= steps.length - 1) show(0, true);
      playButton.textContent = "■ Pause";
      timeline.classList.add("playing");
      timer = setInterval(function () {
        if (current >= steps.length - 1) stop();
        else show(current + 1, true);
      }, Number(speed.value) || 1000);
    }

    var actions = {
      first: function () { stop(); show(0, true); },
      prev: function () { stop(); show(current - 1, true); },
      next: function () { stop(); show(current + 1, true); },
      last: function () { stop(); show(steps.length - 1, true); },
      play: function () { if (timer === null) play(); else stop(); }
    };

    controls.addEventListener("click", function (event) {
      var target = event.target.closest("[data-act]");
      if (target && actions[target.dataset.act]) actions[target.dataset.act]();
    });
    speed.addEventListener("change", function () { if (timer !== null) { stop(); play(); } });
    showAll.addEventListener("change", function () {
      timeline.classList.toggle("show-all", showAll.checked);
    });
    document.addEventListener("keydown", function (event) {
      var tag = (event.target.tagName || "").toLowerCase();
      if (tag === "input" || tag === "textarea" || tag === "select" || event.altKey ||
          event.ctrlKey || event.metaKey) return;
      var keys = { ArrowRight: "next", ArrowLeft: "prev", Home: "first", End: "last", " ": "play" };
      var act = keys[event.key];
      if (!act) return;
      event.preventDefault();
      actions[act]();
    });

    var match = /^#step-(\d+)$/.exec(location.hash);
    controls.hidden = false;
    timeline.classList.add("replaying");
    show(match ? Number(match[1]) - 1 : 0, Boolean(match));
  }

  function initQueueRefresh(section) {
    var url = section.dataset.autorefresh;
    var shown = section.dataset.pending || "";
    function busy() {
      var active = document.activeElement;
      if (active && (active.tagName === "TEXTAREA" || active.tagName === "INPUT")) return true;
      return Array.prototype.some.call(document.querySelectorAll("textarea"), function (t) {
        return t.value.trim() !== "";
      });
    }
    setInterval(function () {
      if (document.hidden || busy()) return;
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (doc) {
          if (doc && doc.pending.join(",") !== shown && !busy()) location.reload();
        })
        .catch(function () { /* the next poll tries again */ });
    }, 5000);
  }

  var timeline = document.getElementById("timeline");
  if (timeline) initReplay(timeline);
  var queue = document.querySelector("[data-autorefresh]");
  if (queue) initQueueRefresh(queue);
})();
