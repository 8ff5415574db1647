//! The Slurm job-array recipe of docs/scaling.md, for real: a single-node cluster (munge,
//! slurmctld, slurmd) started by this test. It needs Slurm (`apt-get install slurm-wlm munge`)
//! and root, so it is marked ignored: `make test` runs it (`--ignored`) where they are there and
//! reports it skipped elsewhere.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

fn sh(dir: &Path, conf: &Path, script: &str) -> std::process::Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_mnist-lab"))
        .parent()
        .unwrap()
        .display()
        .to_string();
    let path = format!("{bin}:{}", std::env::var("PATH").unwrap_or_default());
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env("PATH", path)
        .env("SLURM_CONF", conf)
        .output()
        .unwrap()
}

/// Stops the test's slurmctld and slurmd, even when the test fails.
struct Cluster(std::path::PathBuf);
impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("scontrol")
            .arg("shutdown")
            .env("SLURM_CONF", self.0.join("slurm.conf"))
            .output();
        for pid in ["slurmctld.pid", "slurmd.pid"] {
            if let Ok(p) = std::fs::read_to_string(self.0.join(pid)) {
                let _ = Command::new("kill").arg(p.trim()).output();
            }
        }
    }
}

#[test]
#[ignore = "needs Slurm (slurm-wlm, munge) and root; make test runs it where they are installed"]
fn slurm_job_array_recipe_gives_the_same_results_as_one_run() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    assert!(
        root && ["sbatch", "slurmctld", "slurmd", "munged", "munge"]
            .iter()
            .all(|c| have(c)),
        "this test needs Slurm (slurm-wlm, munge) installed and root"
    );
    let folds = |d: &Path| {
        let t = TINY.replace("folds = 2", "folds = 3");
        std::fs::write(d.join("experiments/tiny.toml"), t).unwrap();
    };
    let reference = workspace("slurm-ref");
    folds(reference.path());
    assert!(
        mnist_lab(reference.path(), &["run", "experiments/tiny.toml"])
            .status
            .success()
    );

    let w = workspace("slurm");
    let d = w.path();
    folds(d);
    let s = d.join("slurm");
    std::fs::create_dir_all(s.join("spool")).unwrap();
    std::fs::create_dir_all(s.join("state")).unwrap();
    let host =
        String::from_utf8_lossy(&Command::new("hostname").arg("-s").output().unwrap().stdout)
            .trim()
            .to_string();
    let conf = s.join("slurm.conf");
    std::fs::write(
        &conf,
        format!(
            "ClusterName=mnistlab\nSlurmctldHost={host}\nAuthType=auth/munge\nProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\nSelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\nSlurmUser=root\n\
             SlurmdUser=root\nReturnToService=2\nMpiDefault=none\nJobAcctGatherType=jobacct_gather/none\n\
             SlurmctldPidFile={0}/slurmctld.pid\nSlurmdPidFile={0}/slurmd.pid\nSlurmdSpoolDir={0}/spool\n\
             StateSaveLocation={0}/state\nNodeName={host} CPUs=2 State=UNKNOWN\n\
             PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
            s.display()
        ),
    )
    .unwrap();
    // munge: reuse a running daemon, else create a key if needed and start one.
    let up = sh(d, &conf, "munge -n | unmunge >/dev/null 2>&1");
    if !up.status.success() {
        let out = sh(
            d,
            &conf,
            "mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge; \
             [ -f /etc/munge/munge.key ] || mungekey -c 2>/dev/null || create-munge-key -f; \
             chown -R munge: /etc/munge /run/munge /var/log/munge /var/lib/munge; \
             runuser -u munge -- munged || munged --force",
        );
        assert!(
            sh(d, &conf, "munge -n | unmunge >/dev/null")
                .status
                .success(),
            "munge: {}",
            text(&out)
        );
    }
    let _cluster = Cluster(s.clone());
    let started = sh(
        d,
        &conf,
        "slurmctld -f \"$SLURM_CONF\" && slurmd -f \"$SLURM_CONF\"",
    );
    assert!(started.status.success(), "{}", text(&started));
    let t = Instant::now();
    while !String::from_utf8_lossy(&sh(d, &conf, "sinfo -h -o %T").stdout).contains("idle") {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the Slurm node never came up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The recipe of docs/scaling.md, with --wait so the test knows when the array is done.
    let out = sh(
        d,
        &conf,
        "mnist-lab plan experiments/tiny.toml > jobs.txt && \
         sbatch --wait --array=0-$(( $(wc -l < jobs.txt) - 1 )) --cpus-per-task=1 --chdir=\"$PWD\" --wrap \
           \"PATH=$PATH mnist-lab run --from-plan jobs.txt --index \\$SLURM_ARRAY_TASK_ID\" && \
         mnist-lab run experiments/tiny.toml",
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("3 of 3 folds cached"), "{}", text(&out));
    for f in ["history.csv", "folds.csv"] {
        assert_eq!(
            std::fs::read_to_string(d.join("results/tiny").join(f)).unwrap(),
            std::fs::read_to_string(reference.path().join("results/tiny").join(f)).unwrap(),
            "{f}"
        );
    }
    // A search, rung by rung: plan, run the array, plan again (docs/scaling.md).
    let search = TINY.replace("epochs = 2", "epochs = 4").replace("folds = 2", "folds = 3")
        + "\n[search]\n\"train.learning_rate\" = [0.001, 0.003, 0.01, 0.03]\n[search.halving]\nmin_epochs = 1\neta = 2\n";
    for dir in [d, reference.path()] {
        std::fs::write(dir.join("experiments/s.toml"), &search).unwrap();
    }
    assert!(mnist_lab(reference.path(), &["run", "experiments/s.toml"])
        .status
        .success());
    let out = sh(
        d,
        &conf,
        "while mnist-lab plan experiments/s.toml > jobs.txt && [ -s jobs.txt ]; do \
           sbatch --wait --array=0-$(( $(wc -l < jobs.txt) - 1 )) --cpus-per-task=1 --chdir=\"$PWD\" --wrap \
             \"PATH=$PATH mnist-lab run --from-plan jobs.txt --index \\$SLURM_ARRAY_TASK_ID\" || exit 1; \
         done && mnist-lab run experiments/s.toml",
    );
    assert!(out.status.success(), "{}", text(&out));
    let csv = |dir: &Path| std::fs::read_to_string(dir.join("results/s/search.csv")).unwrap();
    assert_eq!(csv(d), csv(reference.path()));
    let survivor = csv(d)
        .lines()
        .find(|l| l.ends_with(",survivor"))
        .map(|l| l.split(',').next().unwrap().to_string())
        .unwrap();
    let folds =
        |dir: &Path| std::fs::read(dir.join("results").join(&survivor).join("folds.csv")).unwrap();
    assert_eq!(folds(d), folds(reference.path()));
}
