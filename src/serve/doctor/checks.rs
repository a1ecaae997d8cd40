//! The checks of [`super::Doctor`], one function per part, in the order they run.

use super::{Check, Doctor, Said, Status};
use crate::apdu::{Exchanger, ReaderError};
use crate::cache::{Cache, Feed};
use crate::clock::{from_compact_millis, from_unix_seconds, unix_seconds};
use crate::insurer::{ClockReading, LinkError, Refusal, SignInReport};
use crate::psam::{
    ALGORITHM_DES, ALGORITHM_SM4, ALGORITHM_SSF33, KeyUsage, Psam, PsamError,
    diversification_factor,
};
use crate::reader::{ReaderBackend, ReaderStatus, with_card};
use crate::serve::client::Client;
use crate::serve::config::Config;
use crate::serve::monitor::PsamChoice;
use crate::serve::services::{client_with_msgids, refusal_rules};
use crate::settle::journal::Journal;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The insurer's probe: one attempt, this long at most.
const INSURER_TIMEOUT: Duration = Duration::from_secs(5);
/// The workstation's clock this far from the insurer's: a warning; beyond the second, a
/// failure (the platform refuses messages whose `inf_time` is far off; regions allow a few
/// minutes).
const CLOCK_WARN: Duration = Duration::from_secs(30);
const CLOCK_FAIL: Duration = Duration::from_secs(300);
/// Free space where the cache lives: below the first a warning, below the second a failure
/// (the journal cannot take a settlement on a full disk).
const DISK_WARN_BYTES: u64 = 1024 * 1024 * 1024;
const DISK_FAIL_BYTES: u64 = 100 * 1024 * 1024;

/// Every check, in order.
pub fn all(doctor: Doctor<'_>) -> Vec<Check> {
    let Doctor {
        config,
        config_source,
        readers,
        cache,
        in_daemon,
        daemon_sign_in,
    } = doctor;
    let mut checks = vec![config_check(config, &config_source)];
    match readers {
        Some(readers) => checks.extend(reader_checks(config, readers)),
        None => {
            let none = Said::new("no readers here to check", "此处无读卡器可检查");
            for id in ["pcscd", "readers", "psam"] {
                checks.push(Check::skip(id, none.clone()));
            }
        }
    }
    let cache = cache.or_else(|| open_cache(config));
    let mut insurer = insurer_checks(config, cache.as_deref());
    if let Some(report) = &daemon_sign_in {
        with_the_daemons_sign_in(&mut insurer, report);
    }
    checks.extend(insurer);
    checks.extend(cache_checks(config, cache.as_deref()));
    checks.push(disk_check(&config.cache.path));
    checks.push(socket_check(config, in_daemon));
    checks.push(hospital_check(config));
    checks
}

fn config_check(config: &Config, name: &str) -> Check {
    let findings = config.check();
    let fix = || {
        Said::new(
            "correct the keys named; `medcard config check` explains every key",
            "按提示修改配置项；`medcard config check` 会逐项说明",
        )
    };
    if let Some(error) = findings.errors.first() {
        return Check::fail(
            "config",
            Said::new(format!("{name}: {error}"), format!("配置有误：{error}")),
            fix(),
        );
    }
    if let Some(warning) = findings.warnings.first() {
        return Check::warn(
            "config",
            Said::new(
                format!("{name}: {warning}"),
                format!("配置有警告：{warning}"),
            ),
            fix(),
        );
    }
    Check::pass("config", Said::new(format!("{name} is valid"), "配置有效"))
}

/// pcscd, the readers, the PSAM.
fn reader_checks(config: &Config, backend: &mut dyn ReaderBackend) -> Vec<Check> {
    let readers = match backend.readers() {
        Ok(readers) => readers,
        Err(ReaderError::NoReaders) => Vec::new(),
        Err(e) => {
            let skipped = Said::new(
                "not checked: pcscd is not reachable",
                "未检查：读卡服务不可用",
            );
            return vec![
                Check::fail(
                    "pcscd",
                    Said::new(
                        format!("pcscd is not reachable: {e}"),
                        "读卡服务 pcscd 未运行或无法连接",
                    ),
                    Said::new(
                        "start it: `sudo systemctl start pcscd` (install: `sudo apt-get install pcscd`); then `medcard doctor` again",
                        "启动读卡服务：`sudo systemctl start pcscd`（未安装则 `sudo apt-get install pcscd`），再运行 `medcard doctor`",
                    ),
                ),
                Check::skip("readers", skipped.clone()),
                Check::skip("psam", skipped),
            ];
        }
    };
    let pcscd = Check::pass("pcscd", Said::new("pcscd answers", "读卡服务 pcscd 正常"));
    if readers.is_empty() {
        let skipped = Said::new("not checked: no reader", "未检查：没有读卡器");
        return vec![
            pcscd,
            Check::fail(
                "readers",
                Said::new("no card reader is connected", "没有连接读卡器"),
                Said::new(
                    "plug the reader in (another USB port, another cable); `pcsc_scan` must list it; a reader pcscd does not know needs its driver (libccid or the vendor's)",
                    "插好读卡器（换 USB 口或线）；`pcsc_scan` 应能看到它；pcscd 不认识的读卡器需安装驱动（libccid 或厂家驱动）",
                ),
            ),
            Check::skip("psam", skipped),
        ];
    }
    let psams = find_psams(config, backend, &readers);
    vec![
        pcscd,
        readers_check(&readers, &psams),
        psam_check(config, backend, &psams),
    ]
}

/// The readers holding a card that answers as a PSAM, with its terminal number.
fn find_psams(
    config: &Config,
    backend: &mut dyn ReaderBackend,
    readers: &[ReaderStatus],
) -> Vec<(String, String)> {
    let choice = PsamChoice::from(config.readers.psam.trim());
    readers
        .iter()
        .filter(|r| r.atr.is_some())
        .filter(|r| match &choice {
            PsamChoice::None => false,
            PsamChoice::Named(name) => name == &r.name,
            PsamChoice::Auto => true,
        })
        .filter_map(|r| {
            with_card(backend, &r.name, |channel| {
                let mut exchanger = Exchanger::new(channel);
                Psam::open(&mut exchanger, &r.name).ok().and_then(|psam| {
                    crate::psam::Authenticator::terminal_no(&psam).map(str::to_owned)
                })
            })
            .ok()
            .flatten()
            .map(|terminal_no| (r.name.clone(), terminal_no))
        })
        .collect()
}

fn readers_check(readers: &[ReaderStatus], psams: &[(String, String)]) -> Check {
    let described: Vec<String> = readers
        .iter()
        .map(|r| {
            let holds = if psams.iter().any(|(name, _)| name == &r.name) {
                "PSAM"
            } else if r.atr.is_some() {
                "card"
            } else {
                "empty"
            };
            format!("{} ({holds})", r.name)
        })
        .collect();
    let list = described.join(", ");
    Check::pass(
        "readers",
        Said::new(
            format!("{} reader(s): {list}", readers.len()),
            format!("{} 个读卡器：{list}", readers.len()),
        ),
    )
}

/// The PSAM answers and holds RKSSSE (the key that opens a 3.0 card's holder file).
fn psam_check(
    config: &Config,
    backend: &mut dyn ReaderBackend,
    psams: &[(String, String)],
) -> Check {
    if PsamChoice::from(config.readers.psam.trim()) == PsamChoice::None {
        return Check::skip(
            "psam",
            Said::new("readers.psam = \"none\": no PSAM used", "已配置不使用 PSAM"),
        );
    }
    let Some((reader, terminal_no)) = psams.first() else {
        return Check::warn(
            "psam",
            Said::new(
                "no PSAM found: 3.0 cards are read without their protected items",
                "未找到 PSAM 卡：3.0 社保卡的受保护信息无法读取",
            ),
            Said::new(
                "insert the PSAM (chip down, the small slot or the second reader) or name its reader in readers.psam",
                "插入 PSAM 卡（小卡槽或第二个读卡器），或在 readers.psam 中写明其读卡器",
            ),
        );
    };
    match rkssse_answers(backend, reader, &config.insurer.mdtrtarea_admvs) {
        Ok(()) => Check::pass(
            "psam",
            Said::new(
                format!("PSAM {terminal_no} in {reader} holds RKSSSE"),
                format!("PSAM 卡 {terminal_no}（{reader}）正常，含 RKSSSE 密钥"),
            ),
        ),
        Err(e) => Check::fail(
            "psam",
            Said::new(
                format!("PSAM {terminal_no} in {reader}: {e}"),
                format!("PSAM 卡 {terminal_no}（{reader}）不可用：{e}"),
            ),
            Said::new(
                "ask the card authority (人社) for a PSAM issued for this region with the RKSSSE key",
                "向人社部门申请本地区发行、含 RKSSSE 密钥的 PSAM 卡",
            ),
        ),
    }
}

/// A cryptogram under RKSSSE for the region's diversification factor (nothing is opened), in
/// the first algorithm the PSAM takes: DES, SM4, SSF33.
fn rkssse_answers(
    backend: &mut dyn ReaderBackend,
    reader: &str,
    region: &str,
) -> Result<(), PsamError> {
    let factor = diversification_factor(&format!("{region:0<6}")).unwrap_or(*b"000000sx");
    let answered = with_card(backend, reader, |channel| {
        let mut exchanger = Exchanger::new(channel);
        let mut psam = Psam::open(&mut exchanger, reader)?;
        let mut result = Ok(());
        for algorithm in [ALGORITHM_DES, ALGORITHM_SM4, ALGORITHM_SSF33] {
            result = crate::psam::Authenticator::cryptogram(
                &mut psam,
                KeyUsage::Rkssse,
                algorithm,
                &factor,
                &[0; 8],
            )
            .map(|_| ());
            if !matches!(result, Err(PsamError::UnsupportedAlgorithm(_))) {
                break;
            }
        }
        result
    });
    answered.unwrap_or_else(|_| Err(PsamError::NotAPsam(reader.to_owned())))
}

/// The cache file, opened when it exists.
fn open_cache(config: &Config) -> Option<Arc<Cache>> {
    let path = &config.cache.path;
    (!path.as_os_str().is_empty() && path.exists())
        .then(|| Cache::open(path).ok().map(Arc::new))
        .flatten()
}

/// The insurer, its sign-in, the clock against its own.
fn insurer_checks(config: &Config, cache: Option<&Cache>) -> Vec<Check> {
    if !config.insurer.enabled() {
        let off = Said::new(
            "insurer.url is not set: no insurer link",
            "未配置医保接口地址",
        );
        return vec![
            Check::skip("insurer", off.clone()),
            Check::skip("sign_in", off.clone()),
            Check::skip("clock", off),
        ];
    }
    let url = config.insurer.url.trim();
    let mut link = client_with_msgids(
        config.insurer.link_config(INSURER_TIMEOUT),
        cache,
        config.partition(),
    )
    .with_refusals(refusal_rules(config));
    let started = std::time::Instant::now();
    let signed_in = link.sign_in();
    let elapsed_ms = started.elapsed().as_millis();
    let checks = match signed_in {
        Ok(_) => vec![
            Check::pass(
                "insurer",
                Said::new(
                    format!("{url} answered in {elapsed_ms} ms"),
                    format!("医保接口 {url} 正常（{elapsed_ms} 毫秒）"),
                ),
            ),
            Check::pass("sign_in", Said::new("9001 sign-in works", "9001 签到成功")),
            clock_check(link.clock_reading()),
        ],
        Err(LinkError::Business { infcode, err_msg }) => vec![
            Check::pass(
                "insurer",
                Said::new(format!("{url} answers"), format!("医保接口 {url} 可以连通")),
            ),
            Check::fail(
                "sign_in",
                Said::new(
                    format!("the insurer refused the 9001 sign-in ({infcode}): {err_msg}"),
                    format!("9001 签到被拒绝（{infcode}）：{err_msg}"),
                ),
                if link.refusal(&err_msg) == Refusal::ClockSkew {
                    clock_fix()
                } else {
                    Said::new(
                        "check insurer.fixmedins_code and the operator (opter) against the institution's registration with the insurer",
                        "核对 insurer.fixmedins_code 与操作员编号是否与医保部门登记的一致",
                    )
                },
            ),
            clock_check(link.clock_reading()),
        ],
        Err(e) => vec![
            Check::fail(
                "insurer",
                Said::new(format!("{url}: {e}"), format!("医保接口 {url} 无应答：{e}")),
                Said::new(
                    "check the line to the front-end processor (前置机): is it up, is insurer.url right, does the firewall let this workstation through (`curl -v` the URL)",
                    "检查到前置机的网络：前置机是否运行、insurer.url 是否正确、防火墙是否放行本机（可用 `curl -v` 访问该地址）",
                ),
            ),
            Check::skip(
                "sign_in",
                Said::new("not checked: no answer", "未检查：医保接口无应答"),
            ),
            Check::skip(
                "clock",
                Said::new("not checked: no answer", "未检查：医保接口无应答"),
            ),
        ],
    };
    // The probe's own sign-in is not left behind.
    let _ = link.sign_out();
    checks
}

/// The `sign_in` check with the daemon's own sign-in beside the probe's: a daemon whose
/// sign-in fails while the probe's works is a warning (it tries again every 30 s).
fn with_the_daemons_sign_in(checks: &mut [Check], report: &SignInReport) {
    let Some(check) = checks.iter_mut().find(|c| c.id == "sign_in") else {
        return;
    };
    let (en, zh) = match (report.state, &report.sign_no, &report.last_error) {
        ("signed_in", Some(sign_no), _) => (
            format!(
                "the daemon's sign-in {sign_no} ({} since start)",
                report.sign_ins
            ),
            format!("服务自身签到 {sign_no}（启动以来 {} 次）", report.sign_ins),
        ),
        ("failed", _, Some(error)) => (
            format!("the daemon's own sign-in failed: {error}"),
            format!("服务自身签到失败：{error}"),
        ),
        (state, _, _) => (
            format!("the daemon's sign-in: {state}"),
            format!("服务自身签到状态：{state}"),
        ),
    };
    check.found.en = format!("{}; {en}", check.found.en);
    check.found.zh = format!("{}；{zh}", check.found.zh);
    if report.state == "failed" && check.status == Status::Pass {
        check.status = Status::Warn;
        check.fix = Some(Said::new(
            "the daemon signs in again by itself every 30 s; if it stays, restart it (`sudo systemctl restart medcard`) and read `journalctl -u medcard`",
            "服务每 30 秒自动重新签到；若一直失败，重启服务（`sudo systemctl restart medcard`）并查看 `journalctl -u medcard`",
        ));
    }
}

/// The workstation's clock against the insurer's `refmsg_time`.
fn clock_check(reading: Option<&ClockReading>) -> Check {
    let Some((reading, platform)) =
        reading.and_then(|r| Some((r, from_compact_millis(&r.refmsg_time)?)))
    else {
        return Check::skip(
            "clock",
            Said::new(
                "the insurer's reply gave no refmsg_time",
                "医保应答未带 refmsg_time，无法比对时间",
            ),
        );
    };
    let round_trip = reading
        .answered
        .duration_since(reading.sent)
        .unwrap_or_default();
    let local = reading.sent + round_trip / 2;
    let (apart, which) = match platform.duration_since(local) {
        Ok(ahead) => (ahead, "behind"),
        Err(e) => (e.duration(), "ahead of"),
    };
    let seconds = apart.as_secs();
    let found = Said::new(
        format!("this workstation's clock is {seconds} s {which} the insurer's"),
        format!(
            "本机时间比医保中心{}{seconds} 秒",
            if which == "behind" { "慢" } else { "快" }
        ),
    );
    let fix = clock_fix();
    if apart > CLOCK_FAIL {
        Check::fail("clock", found, fix)
    } else if apart > CLOCK_WARN {
        Check::warn("clock", found, fix)
    } else {
        Check::pass("clock", found)
    }
}

/// What to do about a clock the insurer's differs from.
fn clock_fix() -> Said {
    Said::new(
        "synchronise the clock: `sudo timedatectl set-ntp true` (or chrony with the hospital's time server); the platform refuses messages whose inf_time is off",
        "校准本机时间：`sudo timedatectl set-ntp true`（或用 chrony 对时医院时间服务器）；时间偏差过大医保平台会拒收报文",
    )
}

/// The cache's age and size; the journal's calls still in doubt.
fn cache_checks(config: &Config, cache: Option<&Cache>) -> Vec<Check> {
    let path = &config.cache.path;
    let Some(cache) = cache else {
        let (status_check, found) = if path.as_os_str().is_empty() {
            (
                None,
                Said::new("cache.path is empty: no cache", "未配置本地缓存"),
            )
        } else if path.exists() {
            (
                Some(Said::new(
                    "restore the cache from the last backup (docs/operations.md); do not delete it: it holds the settlement journal",
                    "按 docs/operations.md 从最近的备份恢复缓存文件；不要删除它：其中有结算日志",
                )),
                Said::new(
                    format!("{} cannot be opened", path.display()),
                    format!("缓存文件 {} 无法打开", path.display()),
                ),
            )
        } else {
            (
                None,
                Said::new(
                    format!(
                        "{} does not exist yet (made at the daemon's first start)",
                        path.display()
                    ),
                    "缓存文件尚未创建（服务首次启动时创建）",
                ),
            )
        };
        let first = match status_check {
            Some(fix) => Check::fail("cache", found.clone(), fix),
            None => Check::skip("cache", found.clone()),
        };
        return vec![first, Check::skip("journal", found)];
    };
    vec![cache_age_check(config, cache), journal_check(cache)]
}

fn cache_age_check(config: &Config, cache: &Cache) -> Check {
    let stats = match cache.reader().stats() {
        Ok(stats) => stats,
        Err(e) => {
            return Check::fail(
                "cache",
                Said::new(
                    format!("the cache cannot be read: {e}"),
                    format!("缓存无法读取：{e}"),
                ),
                Said::new(
                    "run `medcard cache stats`; restore from the last backup if it is damaged (docs/operations.md)",
                    "运行 `medcard cache stats`；若已损坏，按 docs/operations.md 从备份恢复",
                ),
            );
        }
    };
    let size_mb = stats.file_bytes / (1024 * 1024);
    let last_ok = [Feed::CardEvents, Feed::Catalogue]
        .iter()
        .map(|feed| {
            cache
                .reader()
                .feed_state(feed.as_str())
                .ok()
                .and_then(|f| f.last_ok)
        })
        .collect::<Option<Vec<i64>>>()
        .and_then(|oks| oks.into_iter().min());
    let Some(last_ok) = last_ok else {
        return Check::warn(
            "cache",
            Said::new(
                format!(
                    "{} ({size_mb} MB, {} cards) was never synced with the insurer",
                    stats.path.display(),
                    stats.cards
                ),
                format!("缓存（{size_mb} MB，{} 张卡）从未与医保同步", stats.cards),
            ),
            Said::new(
                "start the daemon with the insurer reachable, or run `medcard sync`",
                "在医保接口可用时启动服务，或运行 `medcard sync`",
            ),
        );
    };
    let age_s = unix_seconds(SystemTime::now())
        .saturating_sub(last_ok)
        .max(0);
    let found = Said::new(
        format!(
            "{} ({size_mb} MB, {} cards), last synced {age_s} s ago",
            stats.path.display(),
            stats.cards
        ),
        format!("缓存 {size_mb} MB，{} 张卡，{age_s} 秒前同步", stats.cards),
    );
    let limit = i64::try_from(config.cache.stale_limit_s).unwrap_or(i64::MAX);
    if age_s > limit {
        let since = crate::clock::rfc3339(from_unix_seconds(last_ok));
        Check::warn(
            "cache",
            found,
            Said::new(
                format!(
                    "the cache is older than cache.stale_limit_s (synced at {since}): cards get the verdict stale_cache; check the insurer link and `medcard sync`"
                ),
                "缓存已过期，刷卡结果会提示缓存过期：检查医保接口，运行 `medcard sync`",
            ),
        )
    } else {
        Check::pass("cache", found)
    }
}

fn journal_check(cache: &Cache) -> Check {
    match Journal::new(cache.writer().clone()).unresolved_calls() {
        Ok(calls) if calls.is_empty() => Check::pass(
            "journal",
            Said::new("no settlement call in doubt", "没有待确认的结算交易"),
        ),
        Ok(calls) => Check::warn(
            "journal",
            Said::new(
                format!(
                    "{} settlement call(s) in doubt (sent, no answer yet)",
                    calls.len()
                ),
                format!("{} 笔结算交易待确认（已发送、未收到应答）", calls.len()),
            ),
            Said::new(
                "the daemon reverses them (2601) when the insurer answers again; keep it running with the link up, then check `medcard reconcile`",
                "服务会在医保接口恢复后自动冲正（2601）；保持服务运行，之后用 `medcard reconcile` 对账",
            ),
        ),
        Err(e) => Check::fail(
            "journal",
            Said::new(
                format!("the journal cannot be read: {e}"),
                format!("结算日志无法读取：{e}"),
            ),
            Said::new(
                "see docs/operations.md (the journal lives in the cache file)",
                "见 docs/operations.md（结算日志在缓存文件中）",
            ),
        ),
    }
}

/// Free space on the file system the cache lives on.
fn disk_check(cache_path: &Path) -> Check {
    let dir = if cache_path.as_os_str().is_empty() {
        Path::new("/")
    } else {
        let mut dir = cache_path.parent().unwrap_or(Path::new("/"));
        while !dir.exists() {
            dir = dir.parent().unwrap_or(Path::new("/"));
        }
        dir
    };
    let Some(free) = free_bytes(dir) else {
        return Check::skip(
            "disk",
            Said::new(
                format!("{}: free space unknown", dir.display()),
                "无法获取磁盘剩余空间",
            ),
        );
    };
    let free_mb = free / (1024 * 1024);
    let found = Said::new(
        format!("{free_mb} MB free on {}", dir.display()),
        format!("{} 所在磁盘剩余 {free_mb} MB", dir.display()),
    );
    let fix = Said::new(
        "free space there (old logs: `journalctl --vacuum-size=200M`, old backups); with a full disk no settlement can be journalled",
        "清理该磁盘（旧日志 `journalctl --vacuum-size=200M`、旧备份）；磁盘满时无法记录结算",
    );
    if free < DISK_FAIL_BYTES {
        Check::fail("disk", found, fix)
    } else if free < DISK_WARN_BYTES {
        Check::warn("disk", found, fix)
    } else {
        Check::pass("disk", found)
    }
}

/// Bytes an unprivileged process may still write on the file system of `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `stat` is written by statvfs before it is read.
    let stat = unsafe {
        if libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return None;
        }
        stat.assume_init()
    };
    // fsblkcnt_t and c_ulong are u64 here, narrower on other targets.
    #[allow(clippy::useless_conversion)]
    let (blocks, block_size) = (u64::from(stat.f_bavail), u64::from(stat.f_frsize));
    Some(blocks.saturating_mul(block_size))
}

/// The socket: there, not open to every user, and (outside the daemon) answered.
fn socket_check(config: &Config, in_daemon: bool) -> Check {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let path = &config.socket.path;
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(_) => {
            return Check::warn(
                "socket",
                Said::new(
                    format!(
                        "{} does not exist: the daemon is not running",
                        path.display()
                    ),
                    format!("{} 不存在：medcard 服务未运行", path.display()),
                ),
                Said::new(
                    "start it: `sudo systemctl start medcard` (logs: `journalctl -u medcard`)",
                    "启动服务：`sudo systemctl start medcard`（日志：`journalctl -u medcard`）",
                ),
            );
        }
    };
    let mode = metadata.permissions().mode() & 0o777;
    if !metadata.file_type().is_socket() {
        return Check::fail(
            "socket",
            Said::new(
                format!("{} is not a socket", path.display()),
                format!("{} 不是套接字文件", path.display()),
            ),
            Said::new(
                "remove the file and restart medcard",
                "删除该文件后重启 medcard 服务",
            ),
        );
    }
    if mode & 0o007 != 0 {
        return Check::fail(
            "socket",
            Said::new(
                format!("{} is open to every user (mode {mode:o})", path.display()),
                format!("{} 对所有用户开放（权限 {mode:o}）", path.display()),
            ),
            Said::new(
                "set socket.mode to 0660 (or stricter) and restart medcard",
                "将 socket.mode 设为 0660（或更严）后重启服务",
            ),
        );
    }
    if !in_daemon
        && let Err(e) =
            Client::connect(path).and_then(|mut c| c.call("system.info", serde_json::json!({})))
    {
        return Check::fail(
            "socket",
            Said::new(
                format!("{} does not answer: {e}", path.display()),
                format!("{} 无应答：{e}", path.display()),
            ),
            Said::new(
                "a daemon left behind or another user's: `systemctl status medcard`; callers must be in socket.group",
                "检查服务状态 `systemctl status medcard`；调用方须属于 socket.group 用户组",
            ),
        );
    }
    Check::pass(
        "socket",
        Said::new(
            format!("{} (mode {mode:o}) answers", path.display()),
            format!("{}（权限 {mode:o}）正常应答", path.display()),
        ),
    )
}

/// The hospital database, when `[hospital] database` is set: reachable, its schema known.
fn hospital_check(config: &Config) -> Check {
    if !config.hospital.ships() {
        return Check::skip(
            "hospital",
            Said::new(
                "no hospital database configured (a standalone workstation)",
                "未配置医院数据库（单机工作站）",
            ),
        );
    }
    let found = crate::hospital::connect::connect(&config.hospital.settings(), "medcard doctor")
        .map_err(|e| e.to_string())
        .and_then(|mut client| {
            client
                .query_opt("SELECT COALESCE(MAX(version), 0) FROM medcard_schema", &[])
                .map(|row| row.map_or(0, |r| r.get::<_, i32>(0)))
                .map_err(|e| e.to_string())
        });
    match found {
        Ok(version) if version <= crate::hospital::schema::current_version() => Check::pass(
            "hospital",
            Said::new(
                format!("the hospital database answers (schema {version})"),
                format!("医院数据库正常（结构版本 {version}）"),
            ),
        ),
        Ok(version) => Check::fail(
            "hospital",
            Said::new(
                format!("the hospital database has schema {version}, newer than this medcard"),
                format!("医院数据库结构版本 {version} 比本机 medcard 新"),
            ),
            Said::new(
                "upgrade medcard on this workstation",
                "升级本工作站的 medcard",
            ),
        ),
        Err(e) => Check::fail(
            "hospital",
            Said::new(
                format!("the hospital database: {e}"),
                format!("医院数据库不可用：{e}"),
            ),
            Said::new(
                "check hospital.database, the password file and that PostgreSQL is up (docs/hospital.md); settlement goes on and is shipped later",
                "检查 hospital.database、密码文件及 PostgreSQL 是否运行（见 docs/hospital.md）；结算不受影响，稍后补传",
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(state: &'static str, sign_no: Option<&str>, error: Option<&str>) -> SignInReport {
        SignInReport {
            state,
            sign_no: sign_no.map(str::to_owned),
            signed_in_at: None,
            business_date: None,
            sign_ins: 3,
            last_error: error.map(str::to_owned),
            last_error_at: None,
        }
    }

    #[test]
    fn the_daemons_failing_sign_in_turns_a_working_probe_into_a_warning() {
        let probe = || {
            vec![Check::pass(
                "sign_in",
                Said::new("9001 sign-in works", "9001 签到成功"),
            )]
        };
        let mut checks = probe();
        with_the_daemons_sign_in(&mut checks, &report("signed_in", Some("S9"), None));
        assert_eq!(checks[0].status, Status::Pass);
        assert!(
            checks[0]
                .found
                .en
                .ends_with("the daemon's sign-in S9 (3 since start)")
        );
        let mut checks = probe();
        with_the_daemons_sign_in(&mut checks, &report("failed", None, Some("HTTP 500")));
        assert_eq!(checks[0].status, Status::Warn);
        assert!(checks[0].found.zh.ends_with("服务自身签到失败：HTTP 500"));
        assert!(checks[0].fix.is_some());
    }
}
