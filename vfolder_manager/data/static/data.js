/* gpuhub Data page: resumable uploads into a vfolder (tus 1.0 with tus-js-client,
 * the library of the lab panel) and their progress, kept in localStorage so that
 * it survives a reload. tus-js-client keeps each upload's URL under a fingerprint
 * of (vfolder, destination, size, mtime): choosing the same file again after a
 * reload resumes it where the service's offset stands (a browser cannot reopen a
 * file by itself). The uploads go to the page's own tus endpoint
 * ({prefix}data/uploads/VID/), signed in with the page's cookie and XSRF token. */
(function () {
  "use strict";
  var RECORDS = "gpuhub-data:uploads";
  var CHUNK_KEY = "gpuhub-data:chunk-bytes";
  var root = document.getElementById("gpuhub-data");
  if (!root) return;
  var dataUrl = root.dataset.url;
  var xsrf = root.dataset.xsrf;
  var active = {};

  function human(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    for (var i = 0; i < units.length; i++) {
      if (n < 1024 || i === units.length - 1) return i === 0 ? Math.round(n) + " B" : n.toFixed(1) + " " + units[i];
      n /= 1024;
    }
  }

  function load() {
    try {
      var all = JSON.parse(localStorage.getItem(RECORDS) || "[]");
      return Array.isArray(all) ? all : [];
    } catch (e) {
      return [];
    }
  }

  function save(rec) {
    var all = load().filter(function (r) { return r.key !== rec.key; });
    all.unshift(rec);
    localStorage.setItem(RECORDS, JSON.stringify(all.slice(0, 10)));
  }

  function forget(key) {
    localStorage.setItem(RECORDS, JSON.stringify(load().filter(function (r) { return r.key !== key; })));
    render();
  }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function fileUrl(r) {
    return dataUrl + "files/" + r.vid + "/" + r.dest.split("/").map(encodeURIComponent).join("/");
  }

  function render() {
    var list = document.getElementById("data-uploads");
    var section = document.getElementById("data-uploads-section");
    var records = load();
    section.hidden = records.length === 0;
    list.textContent = "";
    records.forEach(function (r) {
      var running = !!active[r.key];
      var state = r.state === "uploading" && !running ? "interrupted" : r.state;
      var pct = r.size ? Math.floor((100 * r.sent) / r.size) : 100;
      var li = el("li", {"data-upload": r.dest, "data-state": state, "data-testid": "upload"});
      var head = el("div", {"class": "gpuhub-upload-head"});
      head.appendChild(el("span", {"class": "gpuhub-upload-name"}, r.vname + "/" + r.dest));
      head.appendChild(el("span", {"class": "small text-body-secondary"}, human(r.sent) + " of " + human(r.size)));
      var label = state === "done" ? "done" : state === "error" ? "failed at " + pct + "%" :
        state === "interrupted" ? "interrupted at " + pct + "%" : pct + "%";
      head.appendChild(el("span", {"class": "gpuhub-upload-state small", "data-testid": "upload-state"}, label));
      li.appendChild(head);
      var bar = el("progress", {max: String(r.size || 1), value: String(r.sent), "aria-label": r.dest + " uploaded"});
      li.appendChild(bar);
      var note = el("div", {"class": "small d-flex flex-wrap gap-2 align-items-baseline"});
      if (r.resumedFrom) {
        note.appendChild(el("span", {"data-testid": "upload-resumed"},
          "resumed at " + human(r.resumedFrom) + " (" + Math.floor((100 * r.resumedFrom) / r.size) + "%)"));
      }
      if (state === "interrupted") {
        var how = el("span", {"class": "text-body-secondary"}, "choose the same file again in ");
        how.appendChild(el("a", {href: dataUrl + "vfolders/" + r.vid + "/" + (r.folder ? "?path=" + encodeURIComponent(r.folder) : "")}, r.vname + "/" + (r.folder || "")));
        how.appendChild(document.createTextNode(" to resume"));
        note.appendChild(how);
      }
      if (state === "error") note.appendChild(el("span", {"class": "text-danger"}, r.error || "failed"));
      if (state === "done") note.appendChild(el("a", {href: fileUrl(r), download: "", "data-testid": "upload-download"}, "Download"));
      if (!running) {
        var b = el("button", {type: "button", "class": "btn btn-link btn-sm p-0 ms-auto"}, "Forget");
        b.addEventListener("click", function () { forget(r.key); });
        note.appendChild(b);
      }
      li.appendChild(note);
      list.appendChild(li);
    });
  }

  function start(file, vid, vname, folder) {
    var dest = (folder ? folder + "/" : "") + file.name;
    var key = ["gpuhub-data", vid, dest, file.size, file.lastModified].join(":");
    var previous = load().filter(function (r) { return r.key === key; })[0];
    var rec = {key: key, vid: vid, vname: vname, folder: folder, dest: dest, name: file.name, size: file.size,
               sent: previous && previous.state !== "done" ? previous.sent : 0, state: "uploading", updated: Date.now()};
    var resuming = false;
    var firstChunk = true;
    function update(patch) {
      Object.keys(patch).forEach(function (k) { rec[k] = patch[k]; });
      rec.updated = Date.now();
      save(rec);
      render();
    }
    var upload = new window.tus.Upload(file, {
      endpoint: dataUrl + "uploads/" + vid + "/",
      chunkSize: Number(localStorage.getItem(CHUNK_KEY)) || 8 * 1024 * 1024,
      retryDelays: [0, 1000, 3000, 5000],
      metadata: {filename: dest, filetype: file.type || "application/octet-stream"},
      headers: {"X-XSRFToken": xsrf},
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      fingerprint: function () { return Promise.resolve(key); },
      onProgress: function (sent) { update({sent: sent}); },
      onChunkComplete: function (size, accepted) {
        if (firstChunk && resuming) update({resumedFrom: accepted - size});
        firstChunk = false;
      },
      onSuccess: function () { delete active[key]; update({sent: file.size, state: "done"}); },
      onError: function (error) {
        delete active[key];
        var text = String((error && error.message) || error);
        var m = /response text: (\{.*?\})/.exec(text);
        if (m) {
          try { text = JSON.parse(m[1]).error || text; } catch (e) { /* keep the whole message */ }
        }
        update({state: "error", error: text.slice(0, 300)});
      }
    });
    active[key] = upload;
    upload.findPreviousUploads().then(function (found) {
      if (found.length) {
        resuming = true;
        upload.resumeFromPreviousUpload(found[0]);
      }
      update({resumedFrom: 0});
      upload.start();
    });
  }

  var input = document.getElementById("data-upload-file");
  var here = document.getElementById("data-vfolder");
  if (input && here) {
    input.addEventListener("change", function () {
      Array.prototype.forEach.call(input.files, function (file) {
        start(file, here.dataset.id, here.dataset.name, here.dataset.path);
      });
      input.value = "";
    });
  }
  render();
})();

/* A running job's log page: every 2 s, what the job wrote since (the page's
 * {prefix}data/jobs/ID/logs.txt?offset=N, the allocator's logs as the user) is
 * appended; once the job is over the page reloads for its end (exit code, reason). */
(function () {
  "use strict";
  var job = document.getElementById("data-job");
  if (!job) return;
  var log = document.getElementById("data-job-log");
  log.scrollTop = log.scrollHeight;  // the newest output in view
  if (!job.dataset.follow) return;
  var empty = document.getElementById("data-job-log-empty");
  var offset = Number(job.dataset.offset) || 0;
  function tick() {
    fetch(job.dataset.follow + "?offset=" + offset, {credentials: "same-origin", cache: "no-store"})
      .then(function (r) {
        if (!r.ok) throw new Error(r.status);
        var next = Number(r.headers.get("X-Log-Offset"));
        var state = r.headers.get("X-Job-State");
        return r.text().then(function (text) {
          if (text) {
            var atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
            log.appendChild(document.createTextNode(text));
            if (empty) empty.hidden = true;
            if (atEnd) log.scrollTop = log.scrollHeight;
          }
          if (next >= offset) offset = next;
          if (state && state !== "queued" && state !== "running") {
            window.location.reload();
            return;
          }
          if (state && state !== job.dataset.state) {
            job.dataset.state = state;
            var badge = document.getElementById("data-job-state");
            badge.textContent = state;
            badge.className = "badge " + (state === "running" ? "text-bg-info" : "text-bg-secondary");
          }
          setTimeout(tick, 2000);
        });
      })
      .catch(function () { setTimeout(tick, 5000); });
  }
  setTimeout(tick, 2000);
})();
