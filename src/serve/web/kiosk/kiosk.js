// medcard self-service kiosk page: talks only to the daemon's WebSocket (/ws, JSON-RPC 2.0).
// The kiosk token comes from the URL fragment (#token=<hex>) and is removed from the URL at
// once. The patient inserts the card or shows the 医保电子凭证 QR code (a keyboard scanner's
// burst of keys, or the daemon's serial scanner). The PIN, the QR code and personal data are
// never logged, never put in the URL.
"use strict";

(function () {
  var RECONNECT_MIN_MS = 500;
  var RECONNECT_MAX_MS = 10000;
  var DEFAULT_IDLE_SECONDS = 60;
  var PIN_MIN = 4;
  var PIN_MAX = 16;
  var TOKEN_KEY = "medcard.kiosk.token";
  var TOPICS = ["card.inserted", "card.ready", "card.removed", "card.error", "credential.scanned"];
  // A keyboard scanner types a whole code in well under a second: keys at most this far
  // apart, at least this many, then Enter. A person typing is slower and is not taken.
  var SCAN_KEY_GAP_MS = 80;
  var SCAN_MIN_CHARS = 8;
  var SCAN_MAX_CHARS = 1024;
  // A refused code's message stays this long, then the first screen again.
  var REFUSED_SHOWN_MS = 6000;
  var SCAN_NOTICE_MS = 5000;
  var CARD_FIRST_TEXT = "请先取走社保卡，再出示医保电子凭证";
  var QR_ONLY_TEXT = "本机请出示医保电子凭证，或插入社保卡";

  var VERDICT_TEXT = {
    ok: "可以使用医保",
    lost: "此卡已挂失，请到人工窗口办理挂失/补卡",
    replaced: "此卡已补换，请使用新卡或到人工窗口",
    cancelled: "此卡已注销，请到人工窗口办理",
    identity_mismatch: "卡内信息与医保中心不一致，请到人工窗口核实身份",
    expired: "卡已过期，请到人工窗口",
    unknown_person: "医保中心未查到您的参保信息，请到人工窗口",
    not_insured: "未查到有效的参保信息，请到人工窗口咨询",
    suspended: "您的医保已暂停，请到人工窗口咨询",
    stale_cache: "暂时无法确认参保状态，本次不能使用医保支付，请到人工窗口",
    balance_mismatch: "卡内余额与医保中心不一致，本次不能使用医保支付，请到人工窗口核对",
    other_region: "异地就医须先备案，请到人工窗口"
  };
  var NO_VERDICT_TEXT = "暂时无法确认参保状态，请到人工窗口";

  var SETTLEMENT_STATE = {
    settled: "已结算", refunded: "已退费", self_pay: "自费", refused: "未成功",
    pending: "处理中", unknown: "处理中", retry: "未完成"
  };
  var RECORD_KIND = { "1": "账户划入", "2": "医疗消费" };

  // ---- state ----
  var token = takeToken();
  var ws = null;
  var connected = false;
  var nextId = 1;
  var pending = {};
  var reconnectDelay = RECONNECT_MIN_MS;
  var config = { hospital_name: "", departments: [], idle_seconds: DEFAULT_IDLE_SECONDS };
  var reader = null;     // the reader the current card is in
  var session = null;    // the card session as card.read returns it
  var credential = null; // or the credential session as credential.present returns it
  var credentialCode = null; // the code being presented or shown: read again, it is ignored
  var keyBurst = { chars: [], last: 0 };
  var noticeTimer = null;
  var epoch = 0;         // bumped whenever the card goes or the page resets: stale replies are dropped
  var pinDigits = [];
  var preview = null;    // {bill, result}
  var idleTimer = null;
  var current = "idle";

  var $ = function (id) { return document.getElementById(id); };

  // ---- token: from the fragment, then out of the URL ----
  function takeToken() {
    var found = null;
    var hash = location.hash.replace(/^#/, "");
    hash.split("&").forEach(function (part) {
      var kv = part.split("=");
      if (kv[0] === "token" && /^[0-9A-Fa-f]{8,256}$/.test(kv[1] || "")) found = kv[1];
    });
    if (location.hash) history.replaceState(null, "", location.pathname + location.search);
    try {
      if (found) sessionStorage.setItem(TOKEN_KEY, found);
      else found = sessionStorage.getItem(TOKEN_KEY);
    } catch (e) { /* storage unavailable: the token lives in memory only */ }
    return found;
  }

  // ---- JSON-RPC over the WebSocket ----
  function connect() {
    var protocols = ["medcard.jsonrpc"];
    if (token) protocols.push("medcard.token." + token);
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket;
    try {
      socket = new WebSocket(scheme + location.host + "/ws", protocols);
    } catch (e) {
      scheduleReconnect();
      return;
    }
    ws = socket;
    socket.onopen = function () {
      if (ws !== socket) return;
      connected = true;
      reconnectDelay = RECONNECT_MIN_MS;
      $("connection").hidden = true;
      start();
    };
    socket.onmessage = function (event) { if (ws === socket) receive(event.data); };
    socket.onerror = function () { /* onclose follows */ };
    socket.onclose = function () {
      if (ws !== socket) return;
      ws = null;
      connected = false;
      failPending();
      $("connection").hidden = false;
      resetPatient();
      show("idle");
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    var delay = reconnectDelay;
    reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX_MS);
    setTimeout(connect, delay);
  }

  function failPending() {
    var waiting = pending;
    pending = {};
    Object.keys(waiting).forEach(function (id) {
      waiting[id].reject({ code: 0, message: "connection lost", data: { message_zh: "系统连接中断，请稍后重试" } });
    });
  }

  function call(method, params) {
    return new Promise(function (resolve, reject) {
      if (!ws || !connected) {
        reject({ code: 0, message: "not connected", data: { message_zh: "系统连接中断，请稍后重试" } });
        return;
      }
      var id = nextId++;
      pending[id] = { resolve: resolve, reject: reject };
      ws.send(JSON.stringify({ jsonrpc: "2.0", id: id, method: method, params: params || {} }));
    });
  }

  function receive(text) {
    var msg;
    try { msg = JSON.parse(text); } catch (e) { return; }
    if (!msg || typeof msg !== "object") return;
    if (msg.id !== undefined && msg.id !== null && pending[msg.id]) {
      var waiter = pending[msg.id];
      delete pending[msg.id];
      if (msg.error) waiter.reject(msg.error);
      else waiter.resolve(msg.result);
      return;
    }
    if (typeof msg.method === "string" && msg.id === undefined) notify(msg.method, msg.params || {});
  }

  // ---- start and notifications ----
  function start() {
    call("events.subscribe", { topics: TOPICS }).catch(function () { /* shown on the next call */ });
    call("kiosk.config", {}).then(applyConfig, function () { /* keep the defaults */ });
    readCurrentCard();
  }

  function applyConfig(result) {
    if (!result) return;
    config.hospital_name = result.hospital_name || "";
    config.departments = Array.isArray(result.departments) ? result.departments : [];
    var idle = Number(result.idle_seconds);
    config.idle_seconds = idle > 0 ? idle : DEFAULT_IDLE_SECONDS;
    $("hospital-name").textContent = config.hospital_name || "医保自助服务";
    armIdleTimer();
  }

  function readCurrentCard() {
    var e = epoch;
    call("card.read", {}).then(function (card) {
      if (e !== epoch || !card) return;
      cardReady(card.reader, card);
    }, function (err) {
      if (e !== epoch) return;
      if (err.code === 1004) showError(err);
      // 1001 (no card) and anything else: stay idle until a card comes
    });
  }

  function notify(method, params) {
    if (method === "card.inserted") {
      resetPatient();
      reader = params.reader;
      show("reading");
    } else if (method === "card.ready") {
      if (reader && params.reader !== reader && session) return;
      cardReady(params.reader, params.card);
    } else if (method === "card.removed") {
      if (reader ? params.reader === reader : !credential) {
        resetPatient();
        show("idle");
      }
    } else if (method === "card.error") {
      if (reader && params.reader !== reader) return;
      resetPatient();
      reader = params.reader;
      showErrorText("无法读取此卡，请重新插卡；如仍不行，请到人工窗口");
    } else if (method === "credential.scanned") {
      if (params.kind === "qr" && typeof params.code === "string") scanned(params.code);
      else showScanNotice(QR_ONLY_TEXT);
    } else if (method === "events.dropped") {
      call("events.subscribe", { topics: TOPICS }).catch(function () {});
      readCurrentCard();
    }
  }

  function cardReady(readerName, card) {
    if (!card) return;
    if (credential) resetPatient(); // the card comes first
    var sameSession = session && session.session_id === card.session_id && reader === readerName;
    reader = readerName;
    session = card;
    if (sameSession && current !== "card" && current !== "reading" && current !== "idle") return;
    drawCard();
    show("card");
    document.body.dataset.readyAt = String(Date.now());
  }

  // Forget everything about the patient: PIN, preview, card or credential session; late
  // replies are dropped.
  function resetPatient() {
    epoch++;
    clearPin();
    preview = null;
    session = null;
    reader = null;
    credential = null;
    credentialCode = null;
    setBusy(false);
  }

  // ---- screens ----
  function show(name) {
    current = name;
    $("screen").dataset.screen = name;
    document.body.dataset.screen = name;
    var sections = document.querySelectorAll("#screen > section");
    for (var i = 0; i < sections.length; i++) {
      sections[i].hidden = sections[i].dataset.for.split(" ").indexOf(name) < 0;
    }
    if (name !== "pin") clearPin();
    armIdleTimer();
  }

  function backToMenu() {
    epoch++;
    clearPin();
    preview = null;
    setBusy(false);
    if (session) { drawCard(); show("card"); }
    else if (credential) { drawCredential(); show("credential"); }
    else show("idle");
  }

  function setBusy(on) {
    $("busy").hidden = !on;
  }

  function errorText(err) {
    if (err && err.data && err.data.message_zh) return err.data.message_zh;
    if (err && err.message) return err.message;
    return "操作未完成，请到人工窗口";
  }

  function showError(err) { showErrorText(errorText(err)); }

  function showErrorText(text) {
    setBusy(false);
    $("message").textContent = text;
    show("error");
  }

  // Runs `step` (returning a promise) with the busy overlay; drops its outcome when the card
  // went meanwhile; errors go to the error screen.
  function guarded(step, onResult) {
    var e = epoch;
    setBusy(true);
    step().then(function (value) {
      if (e !== epoch) return;
      setBusy(false);
      onResult(value);
    }, function (err) {
      if (e !== epoch) return;
      showError(err);
    });
  }

  // ---- the card screen ----
  function maskName(name) {
    var chars = Array.from(name || "");
    if (chars.length === 0) return "";
    return chars[0] + "*".repeat(Math.max(1, chars.length - 1));
  }

  function maskCertno(certno) {
    var s = String(certno || "");
    if (s.length <= 8) return "";
    return s.slice(0, 4) + "*".repeat(s.length - 8) + s.slice(-4);
  }

  function verdictOf(card) { return card && card.verdict ? card.verdict : null; }

  function fromCache(verdict) { return !!verdict && verdict.source === "cache"; }

  function cacheAgeText(verdict) {
    var seconds = Number(verdict.stale_seconds);
    if (verdict.stale_seconds === null || verdict.stale_seconds === undefined || !isFinite(seconds)) {
      return "医保中心暂时无法连接，且本机没有此卡的信息";
    }
    var minutes = Math.max(1, Math.round(seconds / 60));
    var age = minutes < 120 ? minutes + " 分钟" : Math.round(minutes / 60) + " 小时";
    return "医保中心暂时无法连接，以下为 " + age + "前的信息";
  }

  // Why paying (and registering) is not offered, or null when it is.
  function payBlockedReason(card) {
    var verdict = verdictOf(card);
    if (!verdict) return NO_VERDICT_TEXT;
    if (verdict.may_settle === "no") return "此卡现在不能使用医保，暂不能自助挂号和缴费";
    if (fromCache(verdict)) return "因此暂不能自助挂号和缴费，请稍后再试或到人工窗口";
    if (verdict.may_settle !== "yes") return "本次不能使用医保支付，请到人工窗口缴费";
    if (!card.insured) return "未查到参保信息，请到人工窗口缴费";
    return null;
  }

  function registerBlocked(card) {
    var verdict = verdictOf(card);
    return !verdict || verdict.may_settle === "no" || fromCache(verdict) || config.departments.length === 0;
  }

  function drawCard() {
    drawHolder(session);
    showCardOnly(true);
  }

  function drawCredential() {
    drawHolder(credential);
    showCardOnly(false);
  }

  // What only a card holder is offered (the PIN, the balance, taking the card back), or
  // what a credential's holder sees instead (the credential's name, 完成).
  function showCardOnly(card) {
    $("menu-balance").hidden = !card;
    $("menu-eject").hidden = !card;
    $("menu-done").hidden = card;
    $("holder-credential").hidden = card;
  }

  // The holder, the verdict and what is offered, of a card session or a credential session.
  function drawHolder(card) {
    var holder = card.holder || {};
    var verdict = verdictOf(card);
    $("holder-name").textContent = maskName(holder.psn_name) || "持卡人";
    var certno = maskCertno(holder.certno);
    $("holder-certno").textContent = certno ? "证件号 " + certno : "";
    var box = $("verdict");
    box.textContent = verdict ? (VERDICT_TEXT[verdict.code] || verdict.message_zh || NO_VERDICT_TEXT) : NO_VERDICT_TEXT;
    box.dataset.code = verdict ? verdict.code : "none";
    box.className = "verdict " + verdictClass(verdict);
    var age = $("cache-age");
    age.hidden = !fromCache(verdict);
    age.textContent = fromCache(verdict) ? cacheAgeText(verdict) : "";
    var reason = payBlockedReason(card);
    var blocked = $("pay-disabled");
    blocked.hidden = !reason || !verdict || verdict.may_settle === "no";
    blocked.textContent = reason || "";
    $("menu-pay").disabled = !!reason;
    $("menu-register").disabled = registerBlocked(card);
  }

  function verdictClass(verdict) {
    if (!verdict) return "warn";
    if (verdict.may_settle === "no") return "bad";
    if (verdict.code !== "ok" || verdict.may_settle !== "yes") return "warn";
    return fromCache(verdict) ? "warn" : "good";
  }

  // ---- PIN ----
  function randomBelow(n) {
    var limit = Math.floor(0x100000000 / n) * n;
    var word = new Uint32Array(1);
    do { crypto.getRandomValues(word); } while (word[0] >= limit);
    return word[0] % n;
  }

  function shuffledDigits() {
    var digits = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    for (var i = digits.length - 1; i > 0; i--) {
      var j = randomBelow(i + 1);
      var t = digits[i]; digits[i] = digits[j]; digits[j] = t;
    }
    return digits;
  }

  function drawKeypad() {
    var pad = $("pin-keypad");
    pad.textContent = "";
    var digits = shuffledDigits();
    digits.forEach(function (digit, index) {
      if (index === 9) pad.appendChild(keyButton("清空", "clear"));
      var button = keyButton(digit, null);
      button.dataset.digit = digit;
      pad.appendChild(button);
    });
    pad.appendChild(keyButton("删除", "back"));
  }

  function keyButton(label, key) {
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    if (key) { button.dataset.key = key; button.className = "secondary"; }
    return button;
  }

  function drawPinDots() {
    var dots = $("pin-dots");
    dots.textContent = "";
    var shown = Math.max(6, pinDigits.length);
    for (var i = 0; i < shown; i++) {
      var dot = document.createElement("span");
      dot.className = i < pinDigits.length ? "dot filled" : "dot";
      dots.appendChild(dot);
    }
    $("pin-ok").disabled = pinDigits.length < PIN_MIN;
  }

  function clearPin() {
    for (var i = 0; i < pinDigits.length; i++) pinDigits[i] = "";
    pinDigits = [];
  }

  function showPin(messageText) {
    clearPin();
    show("pin");
    drawKeypad();
    drawPinDots();
    $("pin-message").textContent = messageText || "";
  }

  function pinKey(button) {
    if (button.dataset.digit !== undefined) {
      if (pinDigits.length < PIN_MAX) pinDigits.push(button.dataset.digit);
    } else if (button.dataset.key === "back") {
      pinDigits.pop();
    } else if (button.dataset.key === "clear") {
      clearPin();
    }
    drawPinDots();
  }

  function submitPin() {
    if (pinDigits.length < PIN_MIN || !reader) return;
    var pin = pinDigits.join("");
    clearPin();
    drawPinDots();
    var request = call("card.verify_pin", { reader: reader, pin: pin });
    pin = null;
    awaitPin(request);
  }

  // The PIN typed on the reader's own keypad: it never reaches this page.
  function submitPinPad() {
    if (!reader) return;
    clearPin();
    drawPinDots();
    $("pin-message").textContent = "请在读卡器的键盘上输入密码，按确认键结束";
    awaitPin(call("card.verify_pin", { reader: reader, pin_pad: true }));
  }

  function awaitPin(request) {
    var e = epoch;
    setBusy(true);
    request.then(function (result) {
      if (e !== epoch) return;
      setBusy(false);
      if (result && result.ok) loadBalance();
      else showPin(wrongPinText(result));
    }, function (err) {
      if (e !== epoch) return;
      if (err.code === 1006) showErrorText("密码已锁定，请携带身份证到人工窗口办理解锁");
      else showError(err);
    });
  }

  function wrongPinText(result) {
    var left = result && result.tries_left;
    if (typeof left === "number") return "密码错误，还可尝试 " + left + " 次";
    return "密码错误，请重新输入";
  }

  // ---- balance and statement ----
  function loadBalance() {
    guarded(function () {
      return Promise.all([call("card.read", { reader: reader }), call("card.statement", { reader: reader })]);
    }, function (both) {
      session = both[0] || session;
      drawBalance(session, both[1] || {});
      show("balance");
    });
  }

  function money(value) {
    if (value === null || value === undefined || value === "") return "—";
    var n = Number(value);
    return (isFinite(n) ? n.toFixed(2) : String(value)) + " 元";
  }

  function drawBalance(card, statement) {
    var cardBalance = $("balance-card");
    if (card.balance_source === "card" && card.balance) cardBalance.textContent = money(card.balance.balc);
    else if (card.balance_source === "insurer") cardBalance.textContent = "联网卡，以医保中心为准";
    else cardBalance.textContent = "—";
    var insurerBalance = $("balance-insurer");
    insurerBalance.textContent = card.insured ? money(card.insured.balc) : "—";
    var verdict = verdictOf(card);
    if (fromCache(verdict)) insurerBalance.appendChild(smallNote(cacheAgeText(verdict)));
    var box = $("statement");
    box.textContent = "";
    box.appendChild(heading("卡内交易记录"));
    box.appendChild(recordsTable(statement.transactions));
    box.appendChild(heading("本院结算记录"));
    box.appendChild(settlementsTable(statement.settlements));
  }

  function smallNote(text) {
    var p = document.createElement("span");
    p.className = "small-note";
    p.textContent = text;
    return p;
  }

  function heading(text) {
    var h = document.createElement("h2");
    h.textContent = text;
    return h;
  }

  function table(columns, rows, emptyText) {
    if (!rows || rows.length === 0) {
      var p = document.createElement("p");
      p.className = "muted";
      p.textContent = emptyText;
      return p;
    }
    var t = document.createElement("table");
    var head = t.createTHead().insertRow();
    columns.forEach(function (c) {
      var th = document.createElement("th");
      th.textContent = c[0];
      head.appendChild(th);
    });
    var body = t.createTBody();
    rows.forEach(function (row) {
      var tr = body.insertRow();
      columns.forEach(function (c) { fillCell(tr.insertCell(), c[1](row)); });
    });
    return t;
  }

  // A cell's text; an array's parts each stay on one line (a date and a time).
  function fillCell(cell, value) {
    if (!Array.isArray(value)) { cell.textContent = value; return; }
    value.forEach(function (part, i) {
      if (i > 0) cell.appendChild(document.createTextNode(" "));
      var span = document.createElement("span");
      span.className = "nowrap";
      span.textContent = part;
      cell.appendChild(span);
    });
  }

  function recordTime(value) {
    var s = String(value || "");
    if (!/^\d{12,14}$/.test(s)) return s;
    return [s.slice(0, 4) + "-" + s.slice(4, 6) + "-" + s.slice(6, 8), s.slice(8, 10) + ":" + s.slice(10, 12)];
  }

  function recordsTable(records) {
    if (records === null || records === undefined) {
      var p = document.createElement("p");
      p.className = "muted";
      p.textContent = "卡内记录需验证密码后读取";
      return p;
    }
    return table([
      ["时间", function (r) { return recordTime(r.time); }],
      ["类型", function (r) { return RECORD_KIND[r.kind] || r.kind || ""; }],
      ["个人账户", function (r) { return plainAmount(r.acct_pay); }],
      ["个人自付", function (r) { return plainAmount(r.psn_self_pay); }],
      ["统筹支付", function (r) { return plainAmount(r.fund_pay); }]
    ], records, "卡内没有交易记录");
  }

  function plainAmount(value) {
    if (value === null || value === undefined || value === "") return "";
    var n = Number(value);
    return isFinite(n) ? n.toFixed(2) : String(value);
  }

  function settlementsTable(settlements) {
    return table([
      ["日期", function (s) { return s.setl_date || ""; }],
      ["状态", function (s) { return SETTLEMENT_STATE[s.state] || s.state || ""; }],
      ["总额", function (s) { return plainAmount(s.medfee_sumamt); }],
      ["统筹", function (s) { return plainAmount(s.fund_pay_sumamt); }],
      ["个人账户", function (s) { return plainAmount(s.acct_pay); }],
      ["现金", function (s) { return plainAmount(s.psn_cash_pay); }]
    ], settlements, "本院没有结算记录");
  }

  // ---- registration ----
  function showDepartments() {
    var box = $("departments");
    box.textContent = "";
    config.departments.forEach(function (dept, index) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "big";
      button.dataset.dept = dept.dept_code;
      button.dataset.index = String(index);
      button.textContent = dept.dept_name;
      if (dept.dr_name) {
        var doctor = document.createElement("span");
        doctor.className = "small-note";
        doctor.textContent = dept.dr_name;
        button.appendChild(doctor);
      }
      box.appendChild(button);
    });
    show("register");
  }

  // Whom a call is about: the credential session shown, or the card in the reader.
  function holderParams(more) {
    var params = credential ? { credential_session: credential.credential_session } : { reader: reader };
    return Object.assign(params, more);
  }

  function register(dept) {
    var params = holderParams({ dept_code: dept.dept_code, dept_name: dept.dept_name, dr_name: dept.dr_name });
    if (!credential) params.card_session = session.session_id;
    guarded(function () {
      return call("visit.register", params);
    }, function (visit) {
      var facts = $("registration");
      facts.textContent = "";
      addFact(facts, "门诊号", visit.ipt_otp_no, "ipt-otp-no");
      addFact(facts, "科室", visit.dept_name || dept.dept_name);
      addFact(facts, "医生", visit.dr_name || dept.dr_name);
      show("registered");
    });
  }

  function addFact(list, label, value, id) {
    var dt = document.createElement("dt");
    dt.textContent = label;
    var dd = document.createElement("dd");
    dd.textContent = value === null || value === undefined ? "—" : String(value);
    if (id) dd.id = id;
    list.appendChild(dt);
    list.appendChild(dd);
  }

  // ---- paying ----
  function showBills() {
    preview = null;
    var params = holderParams({});
    guarded(function () { return call("bill.list", params); }, function (result) {
      var box = $("bills");
      box.textContent = "";
      var bills = (result && result.bills) || [];
      if (bills.length === 0) {
        var p = document.createElement("p");
        p.className = "message";
        p.textContent = "您目前没有待缴费用";
        box.appendChild(p);
      }
      bills.forEach(function (bill) { box.appendChild(billButton(bill)); });
      show("bills");
    });
  }

  function billButton(bill) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "bill";
    button.dataset.billId = bill.bill_id;
    button.dataset.state = bill.state;
    var name = document.createElement("span");
    name.className = "bill-dept";
    name.textContent = bill.dept_name || "门诊费用";
    var total = document.createElement("span");
    total.className = "bill-total";
    total.textContent = money(bill.total);
    var state = document.createElement("span");
    state.className = "bill-state";
    state.textContent = billStateText(bill.state);
    button.appendChild(name);
    button.appendChild(total);
    button.appendChild(state);
    if (bill.state !== "offered") button.classList.add("paid");
    button.addEventListener("click", function () {
      if (bill.state === "offered") previewBill(bill);
      else if (isPaid(bill.state)) showReceipt(bill.bill_id);
      else showErrorText(settlementStateText(bill));
    });
    return button;
  }

  // bill.list's state: "offered", or its settlement's state once a commit ran with its id.
  function isPaid(state) { return state === "settled" || state === "self_pay"; }

  function billStateText(state) {
    if (state === "offered") return "待缴费";
    if (isPaid(state)) return "已缴费";
    return SETTLEMENT_STATE[state] || "处理中";
  }

  function previewBill(bill) {
    var params = holderParams({ bill_id: bill.bill_id });
    guarded(function () { return call("bill.preview", params); }, function (result) {
      preview = { bill: bill, result: result };
      drawPreview(bill, result);
      show("preview");
    });
  }

  function drawPreview(bill, result) {
    var split = result.source === "local" ? result.local : result.insurer;
    split = split || {};
    $("preview-bill").textContent = (bill.dept_name || "门诊费用") + " · 单号 " + bill.bill_id;
    var facts = $("preview-amounts");
    facts.textContent = "";
    addFact(facts, "医疗费总额", money(split.medfee_sumamt), "amount-medfee");
    addFact(facts, "医保统筹支付", money(split.fund_pay_sumamt), "amount-fund");
    addFact(facts, "个人账户支付", money(split.acct_pay), "amount-acct");
    addFact(facts, "现金支付", money(split.psn_cash_pay), "amount-cash");
    var blocked = result.source !== "insurer" || !result.preview_id;
    var note = $("preview-note");
    note.hidden = !blocked;
    note.textContent = blocked ? "医保中心暂时无法连接，暂不能自助缴费，请稍后再试或到人工窗口" : "";
    $("pay-confirm").disabled = blocked;
  }

  function commitPreview() {
    if (!preview) return;
    var billId = preview.bill.bill_id;
    var previewId = preview.result.preview_id;
    guarded(function () {
      return call("settle.commit", { preview_id: previewId, request_id: billId });
    }, function (settlement) {
      preview = null;
      if (settlement && settlement.state !== "settled" && settlement.state !== "self_pay") {
        showErrorText(settlementStateText(settlement));
        return;
      }
      showReceipt(billId);
    });
  }

  function settlementStateText(settlement) {
    if (settlement.state === "refused") return "医保中心未同意本次结算，未扣费，请到人工窗口";
    return "结算结果暂未确认，请勿重复缴费，请到人工窗口查询";
  }

  function showReceipt(billId) {
    guarded(function () { return call("settle.receipt", { request_id: billId }); }, function (result) {
      $("receipt").textContent = (result && result.text) || "";
      show("receipt");
    });
  }

  // ---- inactivity ----
  function armIdleTimer() {
    if (idleTimer) clearTimeout(idleTimer);
    idleTimer = setTimeout(onIdle, config.idle_seconds * 1000);
  }

  function onIdle() {
    idleTimer = null;
    var waiting = !$("busy").hidden; // a call in progress (a commit) is never cut short
    if (waiting || current === "idle" || current === "reading" || current === "card") { armIdleTimer(); return; }
    if (credential) {
      // The phone left with its patient: the credential session is dropped.
      resetPatient();
      show("idle");
      return;
    }
    backToMenu();
  }

  // ---- the 医保电子凭证 QR code ----
  // A code read by either scanner. The card in the reader comes first; a payment in
  // progress is not cut short; the code shown (or being presented) read again is ignored
  // (a scanner reading the same phone twice); any other code replaces what is shown.
  function scanned(code) {
    if (reader) { showScanNotice(CARD_FIRST_TEXT); return; }
    if (!$("busy").hidden || code === credentialCode) return;
    resetPatient();
    presentCode(code);
  }

  function presentCode(code) {
    var e = epoch;
    credentialCode = code;
    show("presenting");
    call("credential.present", { qr_code: code }).then(function (answer) {
      if (e !== epoch || !answer) return;
      credential = answer;
      drawCredential();
      show("credential");
    }, function (err) {
      if (e !== epoch) return;
      credentialCode = null;
      showError(err);
      // A refused code (1022) says to refresh it on the phone; then the first screen again.
      setTimeout(function () { if (e === epoch && current === "error") backToMenu(); }, REFUSED_SHOWN_MS);
    });
  }

  // A keyboard scanner: printable keys in a quick burst, then Enter, with no field focused.
  function onKey(event) {
    var target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
    if (event.ctrlKey || event.altKey || event.metaKey) { keyBurst.chars = []; return; }
    var inBurst = keyBurst.chars.length > 0 && event.timeStamp - keyBurst.last <= SCAN_KEY_GAP_MS;
    if (event.key === "Enter") {
      var code = inBurst ? keyBurst.chars.join("") : "";
      keyBurst.chars = [];
      if (code.length >= SCAN_MIN_CHARS) { event.preventDefault(); scanned(code); }
      return;
    }
    if (event.key.length !== 1) return; // Shift and the like
    if (!inBurst) keyBurst.chars = [];
    if (keyBurst.chars.length < SCAN_MAX_CHARS) keyBurst.chars.push(event.key);
    keyBurst.last = event.timeStamp;
    event.preventDefault(); // a space must not press the button last touched
  }

  function showScanNotice(text) {
    var notice = $("scan-notice");
    notice.textContent = text;
    notice.hidden = false;
    if (noticeTimer) clearTimeout(noticeTimer);
    noticeTimer = setTimeout(function () { notice.hidden = true; noticeTimer = null; }, SCAN_NOTICE_MS);
  }

  // ---- wiring ----
  function onClick(id, handler) { $(id).addEventListener("click", handler); }

  function wire() {
    ["pointerdown", "keydown", "touchstart", "click"].forEach(function (type) {
      document.addEventListener(type, armIdleTimer, { passive: true, capture: true });
    });
    document.addEventListener("keydown", onKey);
    onClick("large-text", function () {
      var on = document.body.classList.toggle("large");
      $("large-text").setAttribute("aria-pressed", on ? "true" : "false");
    });
    onClick("menu-balance", function () { if (session) showPin(""); });
    onClick("menu-register", function () { if (session || credential) showDepartments(); });
    onClick("menu-pay", function () { if (session || credential) showBills(); });
    onClick("menu-eject", function () { show("eject"); });
    onClick("menu-done", function () { resetPatient(); show("idle"); });
    onClick("pin-ok", submitPin);
    onClick("pin-pad", submitPinPad);
    onClick("pin-cancel", backToMenu);
    onClick("pay-confirm", commitPreview);
    onClick("print", function () { window.print(); });
    onClick("error-back", backToMenu);
    $("pin-keypad").addEventListener("click", function (event) {
      var button = event.target.closest("button");
      if (button) pinKey(button);
    });
    $("departments").addEventListener("click", function (event) {
      var button = event.target.closest("button[data-index]");
      if (button && (session || credential)) register(config.departments[Number(button.dataset.index)]);
    });
    var actions = document.querySelectorAll("[data-action]");
    for (var i = 0; i < actions.length; i++) {
      actions[i].addEventListener("click", function (event) {
        var action = event.currentTarget.dataset.action;
        if (action === "bills") showBills();
        else backToMenu();
      });
    }
  }

  wire();
  show("idle");
  connect();
})();
