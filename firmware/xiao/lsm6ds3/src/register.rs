//! Register addresses and bit masks used by the driver (datasheet section 9).

/// Interrupt 1 routing (`INT1_CTRL`).
pub const INT1_CTRL: u8 = 0x0D;
/// Identity register; reads [`crate::WHO_AM_I_VALUE`].
pub const WHO_AM_I: u8 = 0x0F;
/// Accelerometer control: ODR_XL\[7:4\], FS_XL\[3:2\], LPF1_BW_SEL, BW0_XL.
pub const CTRL1_XL: u8 = 0x10;
/// Gyroscope control: ODR_G\[7:4\], FS_G\[3:2\], FS_125\[1\].
pub const CTRL2_G: u8 = 0x11;
/// Control 3: BOOT, BDU, H_LACTIVE, PP_OD, SIM, IF_INC, BLE, SW_RESET.
pub const CTRL3_C: u8 = 0x12;
/// Data-ready flags: TDA\[2\], GDA\[1\], XLDA\[0\].
pub const STATUS_REG: u8 = 0x1E;
/// Temperature output, low byte (high byte at 0x21).
pub const OUT_TEMP_L: u8 = 0x20;
/// First gyroscope output register; the burst runs to `OUTZ_H_XL` (0x2D).
pub const OUTX_L_G: u8 = 0x22;
/// First accelerometer output register.
pub const OUTX_L_XL: u8 = 0x28;

/// `CTRL3_C`: block data update (outputs not updated until both bytes read).
pub const CTRL3_C_BDU: u8 = 1 << 6;
/// `CTRL3_C`: register address auto-increment for multi-byte access.
pub const CTRL3_C_IF_INC: u8 = 1 << 2;
/// `CTRL3_C`: software reset.
pub const CTRL3_C_SW_RESET: u8 = 1 << 0;
/// `INT1_CTRL`: accelerometer data ready on INT1.
pub const INT1_DRDY_XL: u8 = 1 << 0;
/// `INT1_CTRL`: gyroscope data ready on INT1.
pub const INT1_DRDY_G: u8 = 1 << 1;
/// `CTRL2_G`: the ±125 dps full-scale selector (overrides FS_G).
pub const CTRL2_G_FS_125: u8 = 1 << 1;
