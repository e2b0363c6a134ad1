//! Connections a handler can break on purpose, to simulate a service or proxy that drops the
//! line before its answer is out.
//!
//! Each accepted stream shares a flag with a [`Connection`] handed to handlers as connect
//! info. Once a handler sets it, every read and write on the stream fails, so hyper gives up
//! on the connection without sending a byte of the pending response.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A TCP listener whose streams can be broken by their handlers.
pub(super) struct SimListener {
    inner: TcpListener,
}

/// A handler's handle on the connection its request came in on.
#[derive(Clone, Debug)]
pub(super) struct Connection {
    broken: Arc<AtomicBool>,
}

/// A TCP stream that fails every operation once its [`Connection`] is broken.
pub(super) struct BreakableStream {
    stream: TcpStream,
    connection: Connection,
}

impl SimListener {
    /// Wraps an already-bound listener.
    pub(super) fn new(inner: TcpListener) -> SimListener {
        SimListener { inner }
    }
}

impl Listener for SimListener {
    type Io = BreakableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, remote_addr) = Listener::accept(&mut self.inner).await;
        // Small answers must not wait for delayed ACKs.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "sim.nodelay_failed");
        }
        let connection = Connection {
            broken: Arc::new(AtomicBool::new(false)),
        };
        (BreakableStream { stream, connection }, remote_addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl Connection {
    /// Makes the connection fail from now on; the pending response is never sent.
    pub(super) fn break_off(&self) {
        self.broken.store(true, Ordering::Release);
    }

    fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }
}

impl Connected<IncomingStream<'_, SimListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        stream.io().connection.clone()
    }
}

impl BreakableStream {
    fn check(&self) -> io::Result<()> {
        if self.connection.is_broken() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection broken on purpose by the simulator",
            ));
        }
        Ok(())
    }
}

impl AsyncRead for BreakableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for BreakableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
