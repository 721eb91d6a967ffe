import Logging

/// Reads a whole list in pages from one snapshot, as client-go's pager does.
///
/// Pages keep each response, and the server's work per request, small. They all read the snapshot of the first
/// page, which lives only until etcd compacts its history past it (the API server compacts every five minutes).
/// A list that outlives that, a large one read slowly, gets 410 Expired for its next page; reading it in pages
/// again could expire again, so the pager then lists once more in a single request, which cannot expire.
public struct ListPager: Sendable {
    public typealias FetchPage = @Sendable (ListOptions) async throws -> ObjectList

    private let fetchPage: FetchPage
    private let logger: Logger

    /// - Parameter fetchPage: one request of the list, e.g. ``KubeClient/list(_:namespace:options:)``.
    public init(logger: Logger, fetchPage: @escaping FetchPage) {
        self.fetchPage = fetchPage
        self.logger = logger
    }

    /// Every object `options` selects (``ListOptions/limit`` is the page size), with the list's resourceVersion.
    public func listAll(_ options: ListOptions) async throws -> ObjectList {
        var options = options
        var result = try await self.fetchPage(options)
        while let token = result.continueToken {
            options.continueToken = token
            let page: ObjectList
            do {
                page = try await self.fetchPage(options)
            } catch let error as KubeError where error.code == .gone {
                self.logger.info(
                    "the list's snapshot expired between pages: listing again in one request",
                    metadata: ["itemsRead": "\(result.items.count)", "error": "\(error)"]
                )
                options.continueToken = nil
                options.limit = nil
                return try await self.fetchPage(options)
            }
            result.items += page.items
            result.resourceVersion = page.resourceVersion
            result.continueToken = page.continueToken
        }
        result.remainingItemCount = nil
        return result
    }
}
