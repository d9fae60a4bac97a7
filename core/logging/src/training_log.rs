//! nnU-Net's plain-text training log (training spec §2.11): `fold_X/training_log_YYYY_M_D_HH_MM_SS.txt`,
//! written line by line as `nnUNetTrainer.print_to_log_file` does: `str(datetime.now()) + ":"`, then every
//! argument followed by one space, then a newline, e.g. `2024-05-01 12:00:00.123456: Epoch 3 \n`.
//!
//! Numbers are formatted as nnU-Net prints them: `np.round(x, decimals)` then Python's float `repr`.
//! The per-class pseudo Dice list is written as numpy < 2 prints it (`[0.8123, 0.9]`; numpy ≥ 2 would print
//! `[np.float32(0.8123), …]`).

use chrono::{Datelike, NaiveDateTime, Timelike};
use nnunet_schema::json::python_float_repr;
use std::fmt::Display;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A local date and time, printed like Python's `str(datetime)`: `YYYY-MM-DD HH:MM:SS[.ffffff]` (the
/// fraction only when the microseconds are not zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogTime(pub NaiveDateTime);

impl LogTime {
    /// The current local time (`datetime.now()`).
    pub fn now() -> Self {
        LogTime(chrono::Local::now().naive_local())
    }

    /// From calendar fields; `None` if they are not a valid date and time.
    pub fn from_ymd_hms_micro(year: i32, month: u32, day: u32, hour: u32, min: u32, sec: u32, micro: u32) -> Option<Self> {
        chrono::NaiveDate::from_ymd_opt(year, month, day).and_then(|d| d.and_hms_micro_opt(hour, min, sec, micro)).map(LogTime)
    }

    /// `training_log_%d_%d_%d_%02.0d_%02.0d_%02.0d.txt` (month and day not zero-padded).
    pub fn log_file_name(&self) -> String {
        let t = &self.0;
        format!("training_log_{}_{}_{}_{:02}_{:02}_{:02}.txt", t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second())
    }
}

impl Display for LogTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = &self.0;
        write!(f, "{:04}-{:02}-{:02} {:02}:{:02}:{:02}", t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second())?;
        let micro = t.nanosecond() / 1000 % 1_000_000;
        if micro != 0 { write!(f, ".{micro:06}") } else { Ok(()) }
    }
}

/// `np.round(x, decimals)` (scale, round half to even, unscale) printed with Python's `repr`.
pub fn np_round_repr(x: f64, decimals: i32) -> String {
    let scale = 10f64.powi(decimals);
    python_float_repr((x * scale).round_ties_even() / scale)
}

/// Appends nnU-Net-style lines to one training log file.
#[derive(Debug)]
pub struct TrainingLog {
    path: PathBuf,
    file: File,
}

impl TrainingLog {
    /// Open (create or append to) `output_folder/training_log_<started>.txt`; the folder is created if needed.
    pub fn create(output_folder: &Path, started: LogTime) -> std::io::Result<Self> {
        std::fs::create_dir_all(output_folder)?;
        Self::open(&output_folder.join(started.log_file_name()))
    }

    /// Open (create or append to) a log file at an explicit path.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { path: path.to_path_buf(), file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `print_to_log_file(*args)` at the current time.
    pub fn log_args(&mut self, args: &[&dyn Display]) -> std::io::Result<()> {
        self.log_args_at(LogTime::now(), args)
    }

    /// `print_to_log_file(*args)` stamped `time`: `"<time>: a b \n"`.
    pub fn log_args_at(&mut self, time: LogTime, args: &[&dyn Display]) -> std::io::Result<()> {
        let mut line = format!("{time}: ");
        push_args(&mut line, args);
        self.file.write_all(line.as_bytes())
    }

    /// `print_to_log_file(*args, add_timestamp=False)`: `"a b \n"`.
    pub fn log_args_no_timestamp(&mut self, args: &[&dyn Display]) -> std::io::Result<()> {
        let mut line = String::new();
        push_args(&mut line, args);
        self.file.write_all(line.as_bytes())
    }

    /// One message at the current time.
    pub fn log(&mut self, message: &str) -> std::io::Result<()> {
        self.log_args(&[&message])
    }

    /// One message stamped `time`.
    pub fn log_at(&mut self, time: LogTime, message: &str) -> std::io::Result<()> {
        self.log_args_at(time, &[&message])
    }

    /// `on_train_epoch_start`: an empty line, `Epoch N`, `Current learning rate: <lr rounded to 5 decimals>`.
    pub fn epoch_start(&mut self, time: LogTime, epoch: usize, lr: f64) -> std::io::Result<()> {
        self.log_at(time, "")?;
        self.log_at(time, &format!("Epoch {epoch}"))?;
        self.log_at(time, &format!("Current learning rate: {}", np_round_repr(lr, 5)))
    }

    /// `on_epoch_end`: `train_loss`, `val_loss`, `Pseudo dice [...]` (4 decimals) and `Epoch time: … s` (2 decimals).
    pub fn epoch_end(
        &mut self,
        time: LogTime,
        train_loss: f64,
        val_loss: f64,
        dice_per_class: &[f64],
        epoch_seconds: f64,
    ) -> std::io::Result<()> {
        self.log_args_at(time, &[&"train_loss", &np_round_repr(train_loss, 4)])?;
        self.log_args_at(time, &[&"val_loss", &np_round_repr(val_loss, 4)])?;
        let dice: Vec<String> = dice_per_class.iter().map(|&d| np_round_repr(d, 4)).collect();
        self.log_args_at(time, &[&"Pseudo dice", &format!("[{}]", dice.join(", "))])?;
        self.log_at(time, &format!("Epoch time: {} s", np_round_repr(epoch_seconds, 2)))
    }

    /// `Yayy! New best EMA pseudo Dice: <ema rounded to 4 decimals>`.
    pub fn new_best_ema(&mut self, time: LogTime, ema: f64) -> std::io::Result<()> {
        self.log_at(time, &format!("Yayy! New best EMA pseudo Dice: {}", np_round_repr(ema, 4)))
    }
}

fn push_args(line: &mut String, args: &[&dyn Display]) {
    use std::fmt::Write as _;
    for a in args {
        let _ = write!(line, "{a} ");
    }
    line.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_and_timestamp() {
        let t = LogTime::from_ymd_hms_micro(2024, 5, 1, 9, 3, 7, 123_456).unwrap();
        assert_eq!(t.log_file_name(), "training_log_2024_5_1_09_03_07.txt");
        assert_eq!(t.to_string(), "2024-05-01 09:03:07.123456");
        let t = LogTime::from_ymd_hms_micro(2024, 12, 31, 0, 0, 0, 0).unwrap();
        assert_eq!(t.log_file_name(), "training_log_2024_12_31_00_00_00.txt");
        assert_eq!(t.to_string(), "2024-12-31 00:00:00");
        assert_eq!(LogTime::from_ymd_hms_micro(2024, 5, 1, 0, 0, 0, 42).unwrap().to_string(), "2024-05-01 00:00:00.000042");
    }

    #[test]
    fn rounding_like_numpy() {
        assert_eq!(np_round_repr(0.01, 5), "0.01");
        assert_eq!(np_round_repr(0.009999997, 5), "0.01");
        assert_eq!(np_round_repr(-0.123456, 4), "-0.1235");
        assert_eq!(np_round_repr(0.00001234, 5), "1e-05");
        assert_eq!(np_round_repr(12.345678, 2), "12.35");
        assert_eq!(np_round_repr(0.5, 0), "0.0");
        assert_eq!(np_round_repr(f64::NAN, 4), "NaN");
    }

    // The lines nnU-Net 2.8.1 writes for one epoch (print_to_log_file: every argument followed by a space).
    #[test]
    fn epoch_lines() {
        let dir = tempfile::tempdir().unwrap();
        let t = LogTime::from_ymd_hms_micro(2024, 5, 1, 12, 0, 0, 123_456).unwrap();
        let mut log = TrainingLog::create(&dir.path().join("fold_0"), t).unwrap();
        assert_eq!(log.path(), dir.path().join("fold_0/training_log_2024_5_1_12_00_00.txt"));
        log.log_at(t, "Creating new 5-fold cross-validation split...").unwrap();
        log.log_args_no_timestamp(&[&"These are the global plan.json settings:\n", &"{}", &'\n']).unwrap();
        log.epoch_start(t, 3, 0.00998).unwrap();
        log.epoch_end(t, -0.51234567, -0.6, &[0.81234, 0.9], 12.3456).unwrap();
        log.new_best_ema(t, 0.70001).unwrap();
        let text = std::fs::read_to_string(log.path()).unwrap();
        let ts = "2024-05-01 12:00:00.123456:";
        let expected = format!(
            "{ts} Creating new 5-fold cross-validation split... \n\
             These are the global plan.json settings:\n {{}} \n \n\
             {ts}  \n\
             {ts} Epoch 3 \n\
             {ts} Current learning rate: 0.00998 \n\
             {ts} train_loss -0.5123 \n\
             {ts} val_loss -0.6 \n\
             {ts} Pseudo dice [0.8123, 0.9] \n\
             {ts} Epoch time: 12.35 s \n\
             {ts} Yayy! New best EMA pseudo Dice: 0.7 \n"
        );
        assert_eq!(text, expected);
    }
}
