//! Running a decode's independent pieces of work on the threads it was given.

use std::sync::Mutex;

/// A piece of work borrowing the decode's data.
pub(super) type Task<'a, T> = Box<dyn FnOnce() -> T + Send + 'a>;

/// Runs every task, the first on this thread and each other one on a thread of its own, and
/// returns their results in order. A task whose thread cannot be started runs here after the
/// first; a task that panicked on its thread gives `None`.
pub(super) fn run_all<'a, T: Send>(tasks: Vec<Task<'a, T>>) -> Vec<Option<T>> {
    let mut tasks = tasks.into_iter();
    let Some(first) = tasks.next() else { return Vec::new() };
    // Each task in a slot, so that one whose thread could not start is still here to run.
    let slots: Vec<Mutex<Option<Task<'a, T>>>> = tasks.map(|task| Mutex::new(Some(task))).collect();
    let take = |slot: &Mutex<Option<Task<'a, T>>>| slot.lock().ok().and_then(|mut task| task.take());
    std::thread::scope(|scope| {
        let helpers: Vec<_> = slots
            .iter()
            .map(|slot| {
                std::thread::Builder::new()
                    .name("jpeg-decode".into())
                    .spawn_scoped(scope, move || take(slot).map(|task| task()))
            })
            .collect();
        let mut results = vec![Some(first())];
        for (slot, helper) in slots.iter().zip(helpers) {
            results.push(match helper {
                Ok(helper) => helper.join().ok().flatten(),
                Err(_) => take(slot).map(|task| task()),
            });
        }
        results
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_and_results_keep_their_order() {
        let mut outputs = [0u32; 4];
        let tasks: Vec<Task<'_, usize>> = outputs
            .iter_mut()
            .enumerate()
            .map(|(i, out)| {
                Box::new(move || {
                    *out += 1;
                    i * 10
                }) as Task<'_, usize>
            })
            .collect();
        assert_eq!(run_all(tasks), vec![Some(0), Some(10), Some(20), Some(30)]);
        assert_eq!(outputs, [1; 4]);
    }
}
