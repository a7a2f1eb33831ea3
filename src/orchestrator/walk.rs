//! A walk over a dependency graph that knows only vertices, each vertex's blockers and a
//! callback, after Terraform's `dag` walker: a vertex starts once every blocker that is
//! part of the walk has finished, as many at once as are ready; after a failure nothing
//! new starts and the running visits finish. `up` walks the lab's roles in dependency
//! order, `down` in the reverse.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;

use futures_util::stream::{FuturesUnordered, StreamExt};

/// One vertex's visit: its value for the vertices that depend on it, if it has one.
pub type Visit<'f, T, E> = Pin<Box<dyn Future<Output = Result<Option<T>, E>> + Send + 'f>>;

/// Why a walk stopped.
#[derive(Debug, PartialEq)]
pub enum WalkError<V, E> {
    /// The first visit that failed; later failures of visits already running are dropped.
    Failed(V, E),
    /// These vertices wait on each other: none of them could start.
    Cycle(Vec<V>),
}

/// Visits every vertex once, each after its blockers (blockers outside `vertices` are
/// taken as done). `visit` receives the values of the vertices finished so far. Returns
/// every value by vertex.
pub async fn walk<'f, V, T, E>(
    vertices: Vec<V>,
    blockers: impl Fn(V) -> Vec<V>,
    mut visit: impl FnMut(V, &BTreeMap<V, T>) -> Visit<'f, T, E>,
) -> Result<BTreeMap<V, T>, WalkError<V, E>>
where
    V: Copy + Ord + Send + 'f,
    T: 'f,
    E: 'f,
{
    let in_walk: BTreeSet<V> = vertices.iter().copied().collect();
    let mut pending = vertices;
    let mut done: BTreeSet<V> = BTreeSet::new();
    let mut values: BTreeMap<V, T> = BTreeMap::new();
    let mut running = FuturesUnordered::new();
    let mut failure: Option<(V, E)> = None;
    loop {
        if failure.is_none() {
            let (ready, rest): (Vec<V>, Vec<V>) =
                pending.into_iter().partition(|v| blockers(*v).iter().all(|b| !in_walk.contains(b) || done.contains(b)));
            pending = rest;
            for v in ready {
                let visit = visit(v, &values);
                running.push(async move { (v, visit.await) });
            }
        }
        match running.next().await {
            Some((v, Ok(value))) => {
                done.insert(v);
                if let Some(value) = value {
                    values.insert(v, value);
                }
            }
            Some((v, Err(e))) => {
                if failure.is_none() {
                    failure = Some((v, e));
                }
            }
            None => break,
        }
    }
    match failure {
        Some((v, e)) => Err(WalkError::Failed(v, e)),
        None if !pending.is_empty() => Err(WalkError::Cycle(pending)),
        None => Ok(values),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    /// a <- b <- d, a <- c <- d: each visit takes `cost` seconds of virtual time.
    fn diamond(v: char) -> Vec<char> {
        match v {
            'b' | 'c' => vec!['a'],
            'd' => vec!['b', 'c'],
            _ => vec![],
        }
    }

    #[tokio::test(start_paused = true)]
    async fn blockers_finish_first_and_independent_vertices_overlap() {
        let log = Mutex::new(Vec::new());
        let started = tokio::time::Instant::now();
        let values = walk(vec!['d', 'c', 'b', 'a'], diamond, |v, seen| -> Visit<'_, String, ()> {
            let before: String = seen.keys().collect();
            let log = &log;
            Box::pin(async move {
                log.lock().unwrap().push((v, before));
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok(Some(v.to_string()))
            })
        })
        .await
        .unwrap();
        assert_eq!(values.len(), 4);
        let log = log.into_inner().unwrap();
        let seen_by = |v: char| log.iter().find(|(x, _)| *x == v).unwrap().1.clone();
        assert_eq!(seen_by('a'), "");
        assert_eq!(seen_by('b'), "a");
        assert_eq!(seen_by('c'), "a");
        assert_eq!(seen_by('d'), "abc");
        // b and c ran at once: three rounds of 10 s, not four.
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_failure_nothing_new_starts_and_the_first_failure_is_reported() {
        let visited = Mutex::new(Vec::new());
        let result = walk(vec!['a', 'b', 'c', 'd'], diamond, |v, _| -> Visit<'_, (), &'static str> {
            let visited = &visited;
            Box::pin(async move {
                visited.lock().unwrap().push(v);
                match v {
                    'b' => Err("b broke"),
                    'c' => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        Err("c broke later")
                    }
                    _ => Ok(None),
                }
            })
        })
        .await;
        assert_eq!(result, Err(WalkError::Failed('b', "b broke")));
        let mut visited = visited.into_inner().unwrap();
        visited.sort();
        assert_eq!(visited, vec!['a', 'b', 'c'], "c was running and finished; d never started");
    }

    #[tokio::test]
    async fn a_cycle_is_named_and_outside_blockers_count_as_done() {
        let cyclic = |v: char| match v {
            'x' => vec!['y'],
            'y' => vec!['x'],
            // 'q' is not part of the walk.
            _ => vec!['q'],
        };
        let result = walk(vec!['x', 'y', 'z'], cyclic, |_, _| -> Visit<'_, (), ()> { Box::pin(async { Ok(None) }) }).await;
        assert_eq!(result, Err(WalkError::Cycle(vec!['x', 'y'])));
    }
}
