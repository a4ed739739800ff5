// gpuhub admin panel: every action asks for confirmation in one dialog, then
// posts a form (with the hub's XSRF token) to the action's URL. A button with
// class gpuhub-action names its URL (data-action); a form with class
// gpuhub-confirm-source is submitted through the dialog with its fields copied.
(function () {
  "use strict";
  var dialog = document.getElementById("gpuhub-confirm");
  if (!dialog || !window.bootstrap) return;
  var modal = new bootstrap.Modal(dialog);
  var form = document.getElementById("gpuhub-confirm-form");
  var fields = document.getElementById("gpuhub-confirm-fields");
  var summary = document.getElementById("gpuhub-confirm-summary");

  function open(action, data, label, pairs) {
    form.action = action;
    document.getElementById("gpuhub-confirm-title").textContent = data.title || "Confirm";
    document.getElementById("gpuhub-confirm-text").textContent = data.text || "";
    document.getElementById("gpuhub-confirm-next").value = window.location.pathname + window.location.search;
    document.getElementById("gpuhub-confirm-reason-user").hidden = !data.reasonToUser;
    document.getElementById("gpuhub-confirm-reason").value = "";
    document.getElementById("gpuhub-confirm-ok").textContent = label;
    fields.textContent = "";
    summary.textContent = "";
    (pairs || []).forEach(function (kv) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = kv[0];
      input.value = kv[1];
      fields.appendChild(input);
      if (kv[1] !== "" && kv[0] !== "remove") {
        var li = document.createElement("li");
        li.textContent = kv[0] + ": " + kv[1];
        summary.appendChild(li);
      }
    });
    summary.hidden = !summary.childElementCount;
    modal.show();
  }

  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest(".gpuhub-action");
    if (!btn) return;
    ev.preventDefault();
    open(btn.dataset.action, btn.dataset, btn.textContent.trim(), []);
  });
  document.addEventListener("submit", function (ev) {
    var src = ev.target;
    if (!src.classList || !src.classList.contains("gpuhub-confirm-source")) return;
    ev.preventDefault();
    var pairs = [];
    new FormData(src).forEach(function (v, k) { pairs.push([k, String(v)]); });
    var btn = src.querySelector("[type=submit]");
    open(src.action, src.dataset, btn ? btn.textContent.trim() : "Confirm", pairs);
  });
  dialog.addEventListener("shown.bs.modal", function () {
    document.getElementById("gpuhub-confirm-reason").focus();
  });
})();
