//! Die temperature, from whichever driver owns the TEMP peripheral.

use xiao_proto::Temperature;

/// A source of the nRF52840 die temperature.
pub(crate) trait DieThermometer {
    /// One measurement (0.25 °C resolution on this chip).
    async fn measure(&mut self) -> Temperature;
}

/// USB build: embassy's TEMP driver owns the peripheral.
#[cfg(not(feature = "ble"))]
impl DieThermometer for embassy_nrf::temp::Temp<'static> {
    async fn measure(&mut self) -> Temperature {
        // I30F2: the raw bits are quarter degrees.
        Temperature::DieQuarterCelsius(embassy_nrf::temp::Temp::read(self).await.to_bits())
    }
}

/// BLE build: the MPSL owns TEMP (it uses it to recalibrate the RC clock and
/// the radio), so the reading goes through its API.
#[cfg(feature = "ble")]
impl DieThermometer for &'static nrf_mpsl::MultiprotocolServiceLayer<'static> {
    async fn measure(&mut self) -> Temperature {
        Temperature::DieQuarterCelsius(self.get_temperature().raw())
    }
}

/// The thermometer type of this build.
#[cfg(not(feature = "ble"))]
pub(crate) type Thermometer = embassy_nrf::temp::Temp<'static>;
/// The thermometer type of this build.
#[cfg(feature = "ble")]
pub(crate) type Thermometer = &'static nrf_mpsl::MultiprotocolServiceLayer<'static>;
