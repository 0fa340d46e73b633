//! One poll cycle end to end against the simulated control plane, beside a bare
//! fetch of the same URLs with the same concurrency that parses nothing (the
//! floor), and what each cycle costs the control plane.
//!
//! `cargo bench --bench cycle -- [--sizes 10,1000,10000] [--cycles N]
//! [--concurrency 8] [--latency-ms MS] [--url URL]`
//!
//! By default the simulated control plane runs in this process, on a runtime of
//! its own, serving the fleet of `support::world`: one TCP inbound per sidecar and
//! stats answers padded to about 224 KB, the size current Kuma relays for a
//! sidecar with 600 outbound clusters. It shares the machine's cores with what is
//! measured, as would any local stand-in for a control plane. With `--url` the
//! cycle runs against a control plane elsewhere (the `sim` example in another
//! process, say), and its load is not shown. `--latency-ms` makes every stats
//! answer of the local one that much late, as a control plane that fetches
//! each sidecar's stats over the network would.
//!
//! strictly and the bare fetch take turns, so a change in the machine's load
//! falls on both; the first strictly cycle, which meets every inbound for the
//! first time, is not timed.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use strictly::kuma::client::{ClientConfig, KumaClient};
use strictly::poller::{Poller, Selection};
use strictly::shard::Shard;
use strictly::sim::{Load, SimControlPlane, SimHandle};
use support::{median, option, process_cpu};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let sizes: Vec<usize> = option("--sizes")
        .unwrap_or_else(|| "10,1000,10000".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let concurrency = option("--concurrency").map_or(Ok(8), |c| c.parse())?;
    let latency = Duration::from_millis(option("--latency-ms").map_or(Ok(0), |l| l.parse())?);
    let padding = support::padding()?;

    let strictly_runtime = runtime("strictly")?;
    let sim_runtime = runtime("sim")?;
    println!(
        "poll cycle (median; strictly and the bare fetch take turns; concurrency {concurrency}; \
         stats answers {} ms late)",
        latency.as_millis()
    );
    for size in sizes {
        let local = match option("--url") {
            Some(_) => None,
            None => {
                let mut world = support::world(size, 1, padding.clone());
                support::delay_stats(&mut world, latency);
                Some(sim_runtime.block_on(SimControlPlane::start(world))?)
            }
        };
        let url = option("--url").or_else(|| local.as_ref().map(SimControlPlane::url));
        let url = url.ok_or("no control plane")?;
        let sim = local.as_ref().map(SimControlPlane::handle);

        let cycles = option("--cycles").map_or(Ok(default_cycles(size)), |c| c.parse())?;
        let bench = Bench {
            url,
            concurrency,
            sim,
        };
        bench.compare(&strictly_runtime, size, cycles)?;
        if bench.sim.is_some() {
            bench.load_by_selection(&strictly_runtime, size);
        }
        if let Some(cp) = local {
            sim_runtime.block_on(cp.shutdown());
        }
    }
    Ok(())
}

/// Enough cycles for a stable median without taking all day.
fn default_cycles(size: usize) -> usize {
    match size {
        0..=100 => 41,
        101..=2000 => 9,
        _ => 5,
    }
}

/// Two worker threads, as the daemon gets on a two-core machine.
fn runtime(name: &str) -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
}

struct Bench {
    url: String,
    concurrency: usize,
    sim: Option<SimHandle>,
}

impl Bench {
    fn compare(&self, runtime: &Runtime, size: usize, cycles: usize) -> Result<(), Error> {
        let mut poller = self.poller(Selection::default(), Shard::ALL)?;
        let urls = runtime.block_on(self.urls())?;
        // Kept across cycles, as strictly keeps its client and connection pool.
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        runtime.block_on(poller.cycle());
        runtime.block_on(bare_fetch(&http, &urls, self.concurrency))?;

        let (mut strictly, mut bare, mut loads) = (Vec::new(), Vec::new(), Vec::new());
        let (mut strictly_cpu, mut bare_cpu) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..cycles {
            self.reset_load();
            let (start, cpu) = (Instant::now(), process_cpu());
            runtime.block_on(poller.cycle());
            strictly.push(start.elapsed());
            strictly_cpu += process_cpu() - cpu;
            loads.extend(self.load());

            let (start, cpu) = (Instant::now(), process_cpu());
            runtime.block_on(bare_fetch(&http, &urls, self.concurrency))?;
            bare.push(start.elapsed());
            bare_cpu += process_cpu() - cpu;
        }

        let cpu_share = |cpu: Duration, times: &[Duration]| {
            cpu.as_secs_f64() / times.iter().sum::<Duration>().as_secs_f64()
        };
        let (strictly_share, bare_share) = (
            cpu_share(strictly_cpu, &strictly),
            cpu_share(bare_cpu, &bare),
        );
        let (strictly, bare) = (median(strictly), median(bare));
        println!(
            "{size:>6} dataplanes: strictly {:.3} s  bare fetch {:.3} s  strictly/bare {:.3}  \
             ({cycles} cycles; {:.0} sidecars/s; CPU busy {:.0}% vs {:.0}% of one core, sim included)",
            strictly.as_secs_f64(),
            bare.as_secs_f64(),
            strictly.as_secs_f64() / bare.as_secs_f64(),
            size as f64 / strictly.as_secs_f64(),
            strictly_share * 100.0,
            bare_share * 100.0,
        );
        if let Some(load) = loads.last() {
            println!("        {}", describe(load, size));
        }
        Ok(())
    }

    /// One untimed cycle per selection: how the control plane's load grows.
    fn load_by_selection(&self, runtime: &Runtime, size: usize) {
        let one_service = Selection {
            meshes: Vec::new(),
            services: vec!["fleet-0_shop_svc_8080".into()],
        };
        let cases = [
            ("every service", Selection::default(), Shard::ALL),
            ("--service (one of 4 replicas)", one_service, Shard::ALL),
            (
                "--shard 0/4",
                Selection::default(),
                Shard::new(0, 4).unwrap_or_default(),
            ),
        ];
        for (label, selection, shard) in cases {
            let Ok(mut poller) = self.poller(selection, shard) else {
                continue;
            };
            self.reset_load();
            runtime.block_on(poller.cycle());
            if let Some(load) = self.load() {
                println!("        {label}: {}", describe(&load, size));
            }
        }
    }

    fn poller(&self, selection: Selection, shard: Shard) -> Result<Poller, Error> {
        let (poller, _) = support::poller(self.client_config(), selection, shard)?;
        Ok(poller)
    }

    fn client_config(&self) -> ClientConfig {
        support::client_config(&self.url, self.concurrency, REQUEST_TIMEOUT)
    }

    /// The URLs one cycle reads, in its order: meshes, listing pages, stats.
    async fn urls(&self) -> Result<Urls, Error> {
        let client = KumaClient::new(self.client_config())?;
        let base = Url::parse(&self.url)?;
        let mut listings = vec![base.join("/meshes?size=1000")?];
        let mut stats = Vec::new();
        for mesh in client.meshes().await? {
            let dataplanes = client.dataplanes(&mesh.name).await?;
            for page in 0..dataplanes.len().div_ceil(1000).max(1) {
                let path = format!(
                    "/meshes/{}/dataplanes/_overview?size=1000&offset={}",
                    mesh.name,
                    page * 1000
                );
                listings.push(base.join(&path)?);
            }
            for dataplane in dataplanes {
                let path = format!("/meshes/{}/dataplanes/{}/stats", mesh.name, dataplane.name);
                stats.push(base.join(&path)?);
            }
        }
        Ok(Urls { listings, stats })
    }

    fn reset_load(&self) {
        if let Some(sim) = &self.sim {
            sim.reset_load();
        }
    }

    fn load(&self) -> Option<Load> {
        self.sim.as_ref().map(SimHandle::load)
    }
}

fn describe(load: &Load, size: usize) -> String {
    format!(
        "per cycle: {} requests ({} stats), {:.1} MB served ({:.0} KB per dataplane)",
        load.requests,
        load.stats_requests,
        load.bytes_served as f64 / 1e6,
        load.bytes_served as f64 / 1e3 / size.max(1) as f64,
    )
}

struct Urls {
    listings: Vec<Url>,
    stats: Vec<Url>,
}

/// What a poller without a parser would do: the listings one after the other,
/// then every stats answer, `concurrency` at a time, each body read to its end
/// and dropped chunk by chunk.
async fn bare_fetch(http: &reqwest::Client, urls: &Urls, concurrency: usize) -> Result<(), Error> {
    for url in &urls.listings {
        drain(http, url.clone()).await?;
    }

    let permits = Arc::new(Semaphore::new(concurrency));
    let mut fetches = JoinSet::new();
    for url in &urls.stats {
        let (http, url, permits) = (http.clone(), url.clone(), Arc::clone(&permits));
        fetches.spawn(async move {
            let _permit = permits.acquire().await;
            drain(&http, url).await
        });
    }
    while let Some(fetched) = fetches.join_next().await {
        fetched??;
    }
    Ok(())
}

async fn drain(http: &reqwest::Client, url: Url) -> Result<usize, reqwest::Error> {
    let mut response = http.get(url).send().await?.error_for_status()?;
    let mut bytes = 0;
    while let Some(chunk) = response.chunk().await? {
        bytes += chunk.len();
    }
    Ok(bytes)
}
