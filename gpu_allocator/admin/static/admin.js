// gpuhub admin panel: every action asks for confirmation in one dialog, then
// posts a form (with the hub's XSRF token) to the action's URL.
(function () {
  "use strict";
  var dialog = document.getElementById("gpuhub-confirm");
  if (!dialog || !window.bootstrap) return;
  var modal = new bootstrap.Modal(dialog);
  var form = document.getElementById("gpuhub-confirm-form");
  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest(".gpuhub-action");
    if (!btn) return;
    ev.preventDefault();
    form.action = btn.dataset.action;
    document.getElementById("gpuhub-confirm-title").textContent = btn.dataset.title || "Confirm";
    document.getElementById("gpuhub-confirm-text").textContent = btn.dataset.text || "";
    document.getElementById("gpuhub-confirm-next").value = window.location.pathname + window.location.search;
    document.getElementById("gpuhub-confirm-reason-user").hidden = !btn.dataset.reasonToUser;
    document.getElementById("gpuhub-confirm-reason").value = "";
    document.getElementById("gpuhub-confirm-ok").textContent = btn.textContent.trim();
    modal.show();
  });
  dialog.addEventListener("shown.bs.modal", function () {
    document.getElementById("gpuhub-confirm-reason").focus();
  });
})();
